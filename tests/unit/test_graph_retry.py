"""Retry-After waits are capped (source.max_retry_after_seconds) and a capped wait is logged."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from writeback.adapters.graph import GraphClient, GraphSettings
from writeback.adapters.graph.retry import Backoff
from writeback.errors import ThrottledError


def test_retry_after_within_the_cap_is_honoured_exactly(caplog: pytest.LogCaptureFixture) -> None:
    b = Backoff(cap=120.0)
    assert b.delay(0, 90.0, random.Random(1)) == 90.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_retry_after_above_the_cap_waits_the_cap_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    b = Backoff(cap=120.0)
    with caplog.at_level(logging.WARNING, logger="writeback.graph.retry"):
        assert b.delay(0, 3600.0, random.Random(1)) == 120.0
    (record,) = caplog.records
    assert record.getMessage() == (
        "Graph asked to wait 3600.0 s before retrying (Retry-After); waiting 120.0 s, the configured maximum "
        "(source.max_retry_after_seconds)"
    )
    assert record.__dict__["event"] == "retry_after_capped"


def test_the_client_sleeps_at_most_the_cap_for_a_huge_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    """Through GraphClient: an hour-long Retry-After (seconds or an HTTP date) becomes the configured cap."""
    responses = [
        httpx.Response(429, json={"error": {"code": "TooManyRequests"}}, headers={"Retry-After": "3600"}),
        httpx.Response(
            503, json={"error": {"code": "x"}}, headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}
        ),
        httpx.Response(200, json={"value": []}),
    ]
    sleeps: list[float] = []

    class Tokens:
        def token(self, *, force_refresh: bool = False) -> str:
            return "t"

    settings = GraphSettings(
        tenant_id="t", client_id="c", client_secret="s", graph_url="https://graph.test", max_backoff=45.0
    )
    client = GraphClient(
        settings,
        transport=httpx.MockTransport(lambda _req: responses.pop(0)),
        token_provider=Tokens(),
        sleep=sleeps.append,
    )
    with caplog.at_level(logging.WARNING, logger="writeback.graph.retry"):
        assert client.get("/v1.0/groups") == {"value": []}
    assert sleeps == [45.0, 45.0]
    assert len([r for r in caplog.records if r.__dict__.get("event") == "retry_after_capped"]) == 2


def test_capped_waits_still_give_up_after_max_retries() -> None:
    settings = GraphSettings(
        tenant_id="t", client_id="c", client_secret="s", graph_url="https://graph.test", max_backoff=5.0,
        max_retries=2,
    )  # fmt: skip

    class Tokens:
        def token(self, *, force_refresh: bool = False) -> str:
            return "t"

    sleeps: list[float] = []
    client = GraphClient(
        settings,
        transport=httpx.MockTransport(lambda _r: httpx.Response(429, headers={"Retry-After": "600"})),
        token_provider=Tokens(),
        sleep=sleeps.append,
    )
    with pytest.raises(ThrottledError, match="gave up after 2 retries and 10.00 s"):
        client.get("/v1.0/groups")
    assert sleeps == [5.0, 5.0]
