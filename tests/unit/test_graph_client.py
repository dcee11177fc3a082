"""GraphClient: retries, Retry-After, 401 refresh, error translation, paging — over httpx.MockTransport."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from writeback.adapters.graph import GraphClient, GraphSettings
from writeback.adapters.graph.client import path_kind
from writeback.adapters.graph.retry import Backoff, parse_retry_after
from writeback.errors import AuthenticationError, SourceError, SyncStateError, ThrottledError

SECRET = "s3cr3t-value-never-shown"
GRAPH = "https://graph.example.test"


class FixedTokens:
    """Token provider fake: hands out 'token-N', a new N on each forced refresh."""

    def __init__(self) -> None:
        self.generation = 1
        self.calls: list[bool] = []

    def token(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if force_refresh:
            self.generation += 1
        return f"token-{self.generation}"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], *, max_retries: int = 8, max_backoff: float = 60.0
) -> tuple[GraphClient, list[float], FixedTokens]:
    sleeps: list[float] = []
    tokens = FixedTokens()
    settings = GraphSettings(
        tenant_id="t", client_id="c", client_secret=SECRET, graph_url=GRAPH,
        max_retries=max_retries, max_backoff=max_backoff,
    )  # fmt: skip
    client = GraphClient(
        settings, transport=httpx.MockTransport(handler), token_provider=tokens, sleep=sleeps.append
    )
    return client, sleeps, tokens


def graph_error(
    status: int, code: str, message: str = "msg", headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "rid-123", "date": "x"}}}
    return httpx.Response(status, json=body, headers=headers)


def scripted(
    *responses: httpx.Response | Exception,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def test_429_with_fractional_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    handler, seen = scripted(
        graph_error(429, "TooManyRequests", "Please retry again later.", {"Retry-After": "2.128"}),
        httpx.Response(200, json={"value": [1]}),
    )
    client, sleeps, _ = make_client(handler)
    with caplog.at_level(logging.INFO, logger="writeback.graph"):
        assert client.get("/v1.0/groups") == {"value": [1]}
    assert sleeps == [2.128]
    assert len(seen) == 2
    assert client.stats["throttled"] == 1 and client.stats["retries"] == 1 and client.stats["requests"] == 2
    assert "2.13 s" in caplog.text and "HTTP 429 TooManyRequests" in caplog.text
    assert "token-1" not in caplog.text and "Bearer" not in caplog.text


def test_503_without_retry_after_backs_off_exponentially_with_cap() -> None:
    handler, _ = scripted(*[graph_error(503, "ServiceUnavailable")] * 6, httpx.Response(200, json={}))
    client, sleeps, _ = make_client(handler, max_backoff=4.0)
    client.get("/v1.0/users")
    assert len(sleeps) == 6
    steps = [min(4.0, 0.5 * 2**i) for i in range(6)]
    for slept, step in zip(sleeps, steps, strict=True):
        assert step / 2 <= slept <= step
    assert max(sleeps) <= 4.0
    assert client.stats["unavailable"] == 6


def test_connection_errors_and_dropped_connections_are_retried() -> None:
    handler, seen = scripted(
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, json={"ok": True}),
    )
    client, sleeps, _ = make_client(handler)
    assert client.get("/v1.0/groups") == {"ok": True}
    assert len(sleeps) == 3 and len(seen) == 4
    assert client.stats["network_errors"] == 3


def test_throttling_beyond_max_retries_raises_throttled_error() -> None:
    handler, seen = scripted(*[graph_error(429, "TooManyRequests", headers={"Retry-After": "1.5"})] * 4)
    client, sleeps, _ = make_client(handler, max_retries=3)
    with pytest.raises(ThrottledError) as info:
        client.get("/v1.0/groups/delta", {"$select": "id"})
    assert len(seen) == 4 and sleeps == [1.5, 1.5, 1.5]
    message = str(info.value)
    assert "GET /v1.0/groups/delta" in message and "3 retries" in message and "4.50 s" in message
    assert "429" in message


def test_network_failure_beyond_max_retries_raises_source_error() -> None:
    handler, _ = scripted(*[httpx.ConnectError("refused")] * 3)
    client, _, _ = make_client(handler, max_retries=2)
    with pytest.raises(SourceError) as info:
        client.get("/v1.0/users")
    assert not isinstance(info.value, ThrottledError)
    assert "cannot reach" in str(info.value) and "2 retries" in str(info.value)


def test_401_refreshes_the_token_once_and_retries() -> None:
    handler, seen = scripted(
        graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
        httpx.Response(200, json={"value": []}),
    )
    client, sleeps, tokens = make_client(handler)
    client.get("/v1.0/groups")
    assert [r.headers["Authorization"] for r in seen] == ["Bearer token-1", "Bearer token-2"]
    assert tokens.calls == [False, True]
    assert sleeps == []


def test_second_401_is_an_authentication_error() -> None:
    handler, _ = scripted(*[graph_error(401, "InvalidAuthenticationToken", "expired")] * 2)
    client, _, tokens = make_client(handler)
    with pytest.raises(AuthenticationError, match="InvalidAuthenticationToken"):
        client.get("/v1.0/groups")
    assert tokens.calls == [False, True]


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (graph_error(404, "Request_ResourceNotFound", "Resource 'x' does not exist"), SourceError, "404"),
        (
            graph_error(403, "Authorization_RequestDenied", "Insufficient privileges"),
            SourceError,
            "permission",
        ),
        (graph_error(410, "Gone", "resync"), SyncStateError, "410"),
        (graph_error(400, "syncStateNotFound", "token expired"), SyncStateError, "syncStateNotFound"),
        (graph_error(400, "BadRequest", "resyncRequired: start over"), SyncStateError, "resync"),
    ],
)
def test_graph_errors_are_translated(response: httpx.Response, error: type[Exception], text: str) -> None:
    handler, _ = scripted(response)
    client, sleeps, _ = make_client(handler)
    with pytest.raises(error) as info:
        client.get("/v1.0/groups/delta")
    assert text in str(info.value)
    assert "rid-123" in str(info.value)
    assert sleeps == []


def test_error_without_json_body_still_explains_itself() -> None:
    handler, _ = scripted(httpx.Response(400, text="<html>bad</html>"))
    client, _, _ = make_client(handler)
    with pytest.raises(SourceError, match=r"HTTP 400 Bad Request"):
        client.get("/v1.0/groups")


def test_paging_follows_next_links_and_keeps_empty_pages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("$skiptoken")
        if token is None:
            assert request.url.params["$select"] == "id,displayName"
            return httpx.Response(
                200, json={"value": [{"id": "1"}], "@odata.nextLink": f"{GRAPH}/v1.0/users?$skiptoken=a"}
            )
        if token == "a":
            return httpx.Response(
                200, json={"value": [], "@odata.nextLink": f"{GRAPH}/v1.0/users?$skiptoken=b"}
            )
        return httpx.Response(200, json={"value": [{"id": "2"}, {"id": "3"}]})

    client, _, _ = make_client(handler)
    items = list(client.iter_pages("/users", {"$select": "id,displayName"}))
    assert [i["id"] for i in items] == ["1", "2", "3"]
    assert client.stats["requests"] == 3
    assert client.stats["requests:users"] == 3


def test_links_to_other_hosts_are_refused_so_the_token_stays_home() -> None:
    handler, seen = scripted(
        httpx.Response(
            200, json={"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?$skiptoken=x"}
        )
    )
    client, _, _ = make_client(handler)
    with pytest.raises(SourceError, match="refusing to follow"):
        list(client.iter_pages("/v1.0/users"))
    assert len(seen) == 1


def test_secret_is_not_in_the_settings_repr() -> None:
    settings = GraphSettings(tenant_id="t", client_id="c", client_secret=SECRET)
    assert SECRET not in repr(settings)
    assert settings.scope == "https://graph.microsoft.com/.default"
    assert settings.authority_url == "https://login.microsoftonline.com/t"


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after("10") == 10.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("nonsense") is None
    assert parse_retry_after(None) is None
    import datetime as dt

    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:05 GMT", now=lambda: now) == pytest.approx(5.0)


def test_backoff_is_capped_and_jittered() -> None:
    import random

    backoff = Backoff(base=1.0, cap=8.0)
    rng = random.Random(7)
    delays = [backoff.delay(n, None, rng) for n in range(10)]
    assert all(d <= 8.0 for d in delays)
    assert delays[9] >= 4.0
    assert backoff.delay(3, 0.25, rng) == 0.25


def test_path_kind_hides_ids() -> None:
    assert path_kind("/v1.0/groups/3a5c3221-c465-48c0-95b8-e9305786a271/members") == "groups/{id}/members"
    assert path_kind("/beta/groups/delta") == "groups/delta"


def test_default_port_in_a_next_link_is_the_same_host() -> None:
    handler, seen = scripted(
        httpx.Response(
            200,
            json={
                "value": [{"id": "1"}],
                "@odata.nextLink": "https://GRAPH.example.test:443/v1.0/users?$skiptoken=x",
            },
        ),
        httpx.Response(200, json={"value": [{"id": "2"}]}),
    )
    client, _, _ = make_client(handler)
    assert [i["id"] for i in client.iter_pages("/v1.0/users")] == ["1", "2"]
    assert len(seen) == 2


def test_missing_ca_file_is_a_config_error() -> None:
    from writeback.errors import ConfigError

    settings = GraphSettings(
        tenant_id="t", client_id="c", client_secret=SECRET, ca_file="/nonexistent/ca.pem"
    )
    with pytest.raises(ConfigError, match="ca_file"):
        GraphClient(settings)
