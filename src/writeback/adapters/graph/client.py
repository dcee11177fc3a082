"""The HTTP side of the Graph adapter: authenticated GETs with retries, paging and error translation.

Every httpx and Graph failure becomes a :mod:`writeback.errors` exception here and nowhere else:

- 429/502/503/504, dropped connections and timeouts are retried, honouring ``Retry-After`` and otherwise
  backing off exponentially; when the budget runs out → :class:`ThrottledError` (HTTP) or
  :class:`SourceError` (network).
- 401 → one forced token refresh and a retry (tokens expire or are revoked); again 401 → AuthenticationError.
- 410 Gone, ``syncStateNotFound``, ``resyncRequired`` → :class:`SyncStateError` (the caller resyncs).
- any other error → :class:`SourceError` with Graph's code, message and request-id.

The Authorization header is never logged, and absolute URLs (``@odata.nextLink``) are only followed to the
configured Graph host so the token is never sent elsewhere.

One client may be shared by several threads (the concurrent first read, :mod:`.firstread`): httpx's
``Client`` is thread-safe, the token and the counters are guarded by a lock here, and every HTTP attempt takes
a slot of the client's :class:`~writeback.adapters.graph.concurrency.AdaptiveLimit`, which a 429 halves.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from writeback import __version__
from writeback.adapters.graph.auth import MsalTokenProvider, TokenProvider
from writeback.adapters.graph.concurrency import AdaptiveLimit
from writeback.adapters.graph.retry import RETRYABLE_STATUS, Backoff, parse_retry_after
from writeback.adapters.graph.settings import GraphSettings
from writeback.adapters.graph.validate import kind_of
from writeback.errors import AuthenticationError, ConfigError, SourceError, SyncStateError, ThrottledError

log = logging.getLogger("writeback.graph")

_VERSIONS = ("/v1.0/", "/beta/")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RESYNC_CODES = ("syncstatenotfound", "resyncrequired", "syncstateinvalid")

Params = Mapping[str, str | int]
BATCH_MAX = 20  # requests in one JSON batch (https://learn.microsoft.com/graph/json-batching)


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """System CAs plus, when given, a private CA bundle. Verification is never turned off."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA file {ca_file!r}: {exc}", key="graph.ca_file") from exc
    return context


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind an httpx connect error, if any: those are configuration, not transient."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port dropped, so 'host' and 'host:443' compare equal."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host.lower(), parsed.port


def path_kind(path: str) -> str:
    """'/v1.0/groups/<guid>/members' -> 'groups/{id}/members': a low-cardinality key for request stats."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in ("v1.0", "beta"):
        parts = parts[1:]
    return "/".join("{id}" if _GUID.match(p) else p for p in parts) or "/"


def graph_error_details(response: httpx.Response) -> tuple[str, str, str | None]:
    """(code, message, request-id) from Graph's error JSON, falling back to the status line and headers."""
    code, message, request_id = "", "", response.headers.get("request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
        inner = error.get("innerError") or error.get("innererror")
        if isinstance(inner, dict) and inner.get("request-id"):
            request_id = str(inner["request-id"])
    if not code:
        code = response.reason_phrase or f"HTTP{response.status_code}"
    if not message:
        message = response.text[:200].strip()
    return code, message, request_id


class GraphClient:
    """An authenticated Microsoft Graph client with Graph's retry rules, safe to share between threads: at
    most ``settings.max_in_flight`` requests are sent at once, fewer while Graph throttles (:attr:`limit`).

    ``transport``, ``token_provider``, ``sleep`` and ``rng`` exist for tests (httpx.MockTransport, a fixed
    token, a sleep that records instead of waiting).
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        token_provider: TokenProvider | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._http = httpx.Client(
            verify=_ssl_context(settings.ca_file),
            timeout=settings.timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": f"writeback/{__version__}", "Accept": "application/json"},
        )
        self._tokens = token_provider or MsalTokenProvider(settings, self._http)
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter, not security
        self._backoff = Backoff(cap=settings.max_backoff)
        self._stats: Counter[str] = Counter()
        self._lock = threading.Lock()  # the counters and the token provider (MSAL's cache) between threads
        self._origin = _origin(settings.base_url)
        self.limit = AdaptiveLimit(settings.max_in_flight)

    # -- public API ----------------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: requests, retries, throttled (429), unavailable (5xx), network_errors, token_refreshes,
        and ``requests:<path kind>`` per endpoint."""
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            return self._tokens.token(force_refresh=force_refresh)

    def get(self, path_or_url: str, params: Params | None = None) -> dict[str, Any]:
        """GET one Graph resource or page and return its JSON object."""
        body = self._request("GET", self._url(path_or_url), params)
        assert body is not None
        return body

    def get_if_found(self, path_or_url: str, params: Params | None = None) -> dict[str, Any] | None:
        """:meth:`get`, but None when Graph answers 404 (the object was deleted since it was listed)."""
        return self._request("GET", self._url(path_or_url), params, missing_ok=True)

    def batch_get(self, version: str, urls: Sequence[str]) -> list[dict[str, Any] | None]:
        """GET up to :data:`BATCH_MAX` URLs (paths with their query, or absolute links to this Graph) in JSON
        batches (``POST /{version}/$batch``, https://learn.microsoft.com/graph/json-batching), answers in order.

        Graph evaluates each item on its own: a 404 item gives None (the object is gone); a 429/503 item fails
        only that item, so it is sent again in a later batch after its Retry-After (or a backoff), and lowers
        the client's concurrency like a throttled request; any other failed item raises as a request would."""
        if len(urls) > BATCH_MAX:
            raise ValueError(f"a JSON batch holds at most {BATCH_MAX} requests")
        endpoint = f"{self.settings.base_url}/{version}/$batch"
        pending = {str(i): self._batch_url(version, url) for i, url in enumerate(urls)}
        results: dict[str, dict[str, Any] | None] = {}
        retries, waited = 0, 0.0
        while pending:
            epoch = self.limit.current()
            body = {"requests": [{"id": i, "method": "GET", "url": u} for i, u in pending.items()]}
            for u in pending.values():
                self._count(f"batched:{path_kind(urlsplit(u).path)}")
            answer = self._request("POST", endpoint, None, json_body=body, after_wait=retries > 0)
            assert answer is not None
            items = answer.get("responses")
            if not isinstance(items, list):
                raise SourceError(f"POST /{version}/$batch: 'responses' is {kind_of(items)}, expected a list")
            waits: list[float | None] = []
            for item in items:
                item_id = str(item.get("id")) if isinstance(item, Mapping) else None
                if item_id not in pending:
                    continue
                url = pending[item_id]
                status = item.get("status")
                reply = item.get("body")
                if isinstance(status, int) and status < 400 and isinstance(reply, dict):
                    results[item_id] = reply
                    del pending[item_id]
                    continue
                response = httpx.Response(
                    status if isinstance(status, int) else 502,
                    headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
                    json=reply if isinstance(reply, dict) else {},
                )
                if response.status_code == 404:
                    results[item_id] = None
                    del pending[item_id]
                elif response.status_code in RETRYABLE_STATUS:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    self._count("throttled" if response.status_code == 429 else "unavailable")
                    if response.status_code == 429 or retry_after is not None:
                        pause = None if retry_after is None else min(retry_after, self.settings.max_backoff)
                        self.limit.throttled(epoch, pause)
                    waits.append(retry_after)
                elif response.status_code < 400:
                    raise SourceError(
                        f"GET {url} (in a $batch): HTTP {response.status_code} without a JSON body"
                    )
                else:
                    raise self._error(response, f"GET {url} (in a $batch)")
            if not pending:
                break
            if not waits:
                raise SourceError(f"POST /{version}/$batch: no answer for {len(pending)} of its requests")
            if retries >= self.settings.max_retries:
                self._give_up(f"POST /{version}/$batch", "throttled items", retries, waited, None)
            known = [w for w in waits if w is not None]
            delay = self._backoff.delay(retries, max(known) if known else None, self._rng)
            retries += 1
            self._count("retries")
            self._count("throttle_wait_ms", round(delay * 1000))
            self._sleep(delay)
            waited += delay
        return [results[str(i)] for i in range(len(urls))]

    def _batch_url(self, version: str, url: str) -> str:
        """A batch item's url: relative to the version (``/groups/{id}/members?…``)."""
        if "://" in url:
            url = self._url(url)[len(self.settings.base_url) :]  # checks the link points to this Graph
        prefix = f"/{version}/"
        if url.startswith(prefix):
            return url[len(prefix) - 1 :]
        if url.startswith(_VERSIONS):
            raise SourceError(f"{url}: a JSON batch to /{version} cannot carry a request to another version")
        return url

    def pages(self, path_or_url: str, params: Params | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink`` as given (query is in the link)."""
        page = self.get(path_or_url, params)
        yield page
        while next_link := page.get("@odata.nextLink"):
            page = self.get(str(next_link))
            yield page

    def iter_pages(self, path: str, params: Params | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged collection."""
        for page in self.pages(path, params):
            yield from page.get("value") or ()

    def check(self) -> None:
        """Prove the credential and permissions work: one token, one small read of groups and of users."""
        self._token()
        for resource, permission in (("groups", "Group.Read.All"), ("users", "User.Read.All")):
            try:
                self.get(f"/v1.0/{resource}", {"$top": 1, "$select": "id"})
            except SourceError as exc:
                if "HTTP 403" in str(exc):
                    raise SourceError(
                        f"{exc}. Grant the app the application permission {permission} on Microsoft Graph "
                        "and give admin consent."
                    ) from exc
                raise

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serves(self, link: str) -> bool:
        """Whether ``link`` (a stored delta link) is on the configured Graph endpoint, the only place the access
        token is sent: after ``graph_url`` changed, links issued by the old endpoint are not followed."""
        return _origin(link) == self._origin

    # -- internals -----------------------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            if _origin(path_or_url) != self._origin:
                parts = urlsplit(path_or_url)
                raise SourceError(
                    f"refusing to follow a link to {parts.scheme}://{parts.netloc}: it is not the configured "
                    f"Graph endpoint {self.settings.base_url} (the access token is sent only there)"
                )
            return path_or_url
        path = "/" + path_or_url.lstrip("/")
        if not path.startswith(_VERSIONS):
            path = "/v1.0" + path
        return self.settings.base_url + path

    def _request(
        self,
        method: str,
        url: str,
        params: Params | None,
        *,
        missing_ok: bool = False,
        json_body: Mapping[str, Any] | None = None,
        after_wait: bool = False,
    ) -> dict[str, Any] | None:
        path = urlsplit(url).path
        what = f"{method} {path}"
        refreshed = False
        waited = 0.0
        retries = 0
        token = self._token()
        while True:
            self._count("requests")
            self._count(f"requests:{path_kind(path)}")
            failure: str
            retry_after: float | None = None
            slot = self.limit.acquire(waited=after_wait or retries > 0)
            throttled = False
            try:
                response = self._http.request(
                    method,
                    url,
                    params=dict(params) if params else None,
                    headers={"Authorization": f"Bearer {token}"},
                    json=json_body,
                )
                if response.status_code in RETRYABLE_STATUS:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    # A 503 without Retry-After is the service's trouble, not this app's budget.
                    throttled = response.status_code == 429 or retry_after is not None
            except httpx.TransportError as exc:
                tls = _tls_failure(exc)
                if tls is not None:
                    raise SourceError(
                        f"{what}: TLS verification of {self.settings.base_url} failed ({tls}). Configure the "
                        "CA that signed the server certificate (ca_file); verification is never disabled."
                    ) from exc
                self._count("network_errors")
                detail = str(exc).rstrip(".")
                failure = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
                last_exc: BaseException | None = exc
            else:
                status = response.status_code
                if status < 400:
                    return self._json(response, what)
                last_exc = None
                if status == 404 and missing_ok:
                    return None
                if status == 401 and not refreshed:
                    refreshed = True
                    self._count("token_refreshes")
                    log.info("%s: HTTP 401, getting a fresh access token and retrying once", what)
                    token = self._token(force_refresh=True)
                    continue
                if status not in RETRYABLE_STATUS:
                    raise self._error(response, what)
                self._count("throttled" if status == 429 else "unavailable")
                code, _message, _rid = graph_error_details(response)
                failure = f"HTTP {status} {code}"
            finally:
                # The pause of the other threads is capped like this thread's own wait (Backoff).
                pause = None if retry_after is None else min(retry_after, self.settings.max_backoff)
                self.limit.release(slot, throttled=throttled, retry_after=pause)
            if retries >= self.settings.max_retries:
                self._give_up(what, failure, retries, waited, last_exc)
            delay = self._backoff.delay(retries, retry_after, self._rng)
            retries += 1
            self._count("retries")
            if last_exc is None:  # Graph answered 429/503: a throttling wait (milliseconds, for the metrics)
                self._count("throttle_wait_ms", round(delay * 1000))
            log.info(
                "%s: %s; retry %d/%d in %.2f s%s",
                what,
                failure,
                retries,
                self.settings.max_retries,
                delay,
                " (Retry-After)" if retry_after is not None else "",
            )
            self._sleep(delay)
            waited += delay

    def _give_up(
        self, what: str, failure: str, retries: int, waited: float, exc: BaseException | None
    ) -> NoReturn:
        message = (
            f"{what}: {failure}; gave up after {retries} retries and {waited:.2f} s of waiting. "
            "Graph is throttling or unavailable; try again later or reduce the request rate."
        )
        if exc is not None:
            raise SourceError(
                f"{what}: cannot reach {self.settings.base_url} ({failure}); gave up after {retries} retries "
                f"and {waited:.2f} s of waiting. Check network access to Graph."
            ) from exc
        raise ThrottledError(message)

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceError(f"{what}: HTTP {response.status_code} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise SourceError(f"{what}: expected a JSON object, got {type(body).__name__}")
        return body

    def _error(self, response: httpx.Response, what: str) -> SourceError:
        status = response.status_code
        code, message, request_id = graph_error_details(response)
        text = f"{what}: HTTP {status} {code}: {message}"
        if request_id:
            text += f" (request-id {request_id})"
        if status == 410 or any(c in f"{code} {message}".lower() for c in _RESYNC_CODES):
            return SyncStateError(text + "; a full resync is required")
        if status == 401:
            return AuthenticationError(text + "; a fresh token was refused too. Check the app's credential.")
        if status == 403:
            return SourceError(text + ". The app lacks a Graph application permission (admin consent).")
        return SourceError(text)
