"""Access tokens for Graph: MSAL's confidential client (client credentials flow), unchanged.

MSAL is given an ``http_client`` built on the same ``httpx.Client`` as the Graph calls, so TLS settings
(system CAs or the configured CA file) and, in tests, the transport are shared. The MSAL app is built on
first use: building it fetches the authority's OpenID configuration, which is network I/O and can fail.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import msal
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from writeback.adapters.graph.retry import RETRYABLE_STATUS, Backoff, parse_retry_after
from writeback.adapters.graph.settings import GraphSettings
from writeback.errors import AuthenticationError, ConfigError

log = logging.getLogger("writeback.graph")


class TokenProvider(Protocol):
    """Gives a bearer token for Graph. ``force_refresh`` drops any cached token first."""

    def token(self, *, force_refresh: bool = False) -> str: ...


# The token endpoint throttles too (429, or 503 while busy). MSAL would cache such an answer for its
# Retry-After and fail every call until then, so the transport retries a few times first.
TOKEN_RETRIES = 4
_TOKEN_BACKOFF = Backoff(base=1.0, cap=30.0)


class _MsalHttpClient:
    """MSAL's documented ``http_client`` interface (``post``/``get`` returning a response) on httpx."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff = _TOKEN_BACKOFF,
    ) -> None:
        self._http = http
        self._sleep = sleep
        self._backoff = backoff
        self._rng = random.Random()

    def _send(self, call: Callable[[], httpx.Response]) -> httpx.Response:
        response = call()
        for attempt in range(TOKEN_RETRIES):
            if response.status_code not in RETRYABLE_STATUS:
                break
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            # Capped even when the server asks for longer: a sign-in should fail visibly, not hang for minutes.
            wait = min(self._backoff.delay(attempt, retry_after, self._rng), self._backoff.cap)
            log.info("token endpoint answered %s; retrying in %.2f s", response.status_code, wait)
            self._sleep(wait)
            response = call()
        return response

    def post(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        **_: Any,
    ) -> httpx.Response:
        if isinstance(data, str | bytes):
            body = data
            return self._send(lambda: self._http.post(url, params=params, content=body, headers=headers))
        if isinstance(data, dict):
            # MSAL passes the signed client assertion as bytes; httpx would form-encode those as "b'...'".
            data = {k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}
        return self._send(lambda: self._http.post(url, params=params, data=data, headers=headers))

    def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **_: Any,
    ) -> httpx.Response:
        return self._http.get(url, params=params, headers=headers)

    def close(self) -> None:
        """MSAL may close its client; ours belongs to the GraphClient, which closes it."""


def certificate_thumbprint(certificate_pem: bytes) -> str:
    """SHA-1 of the certificate's DER encoding in hex: the ``x5t`` MSAL puts in the client assertion."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise ConfigError("the Graph client certificate is not a valid PEM certificate") from exc
    der = cert.public_bytes(Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _credential(settings: GraphSettings) -> str | dict[str, str]:
    if settings.client_secret:
        return settings.client_secret
    assert settings.certificate_pem is not None and settings.private_key_pem is not None
    return {
        "private_key": settings.private_key_pem.decode("ascii"),
        "thumbprint": certificate_thumbprint(settings.certificate_pem),
    }


def describe_failure(result: dict[str, Any]) -> str:
    """'invalid_client AADSTS7000215: Invalid client secret provided. ...' — MSAL's error, no credential."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "").strip()
    first_line = description.splitlines()[0] if description else ""
    return f"{error}: {first_line}" if first_line else error


class MsalTokenProvider:
    """Client-credentials tokens from MSAL; MSAL's own cache serves them until shortly before expiry."""

    def __init__(self, settings: GraphSettings, http: httpx.Client) -> None:
        self._settings = settings
        self._http = http
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            settings = self._settings
            try:
                self._app = msal.ConfidentialClientApplication(
                    settings.client_id,
                    client_credential=_credential(settings),
                    authority=settings.authority_url,
                    http_client=_MsalHttpClient(self._http),
                    instance_discovery=False,
                    http_cache={},  # MSAL throttles repeated failures; keep that state per client
                )
            except (ValueError, OSError, httpx.HTTPError) as exc:
                raise AuthenticationError(
                    f"cannot use authority {settings.authority_url} for tenant {settings.tenant_id}: "
                    f"{type(exc).__name__}: {_safe(exc, settings)}. Check the tenant id, the authority URL "
                    "and network/TLS access to it."
                ) from exc
        return self._app

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            app = self._application()
            if force_refresh:
                app.remove_tokens_for_client()
            try:
                result = app.acquire_token_for_client(scopes=[self._settings.scope])
            except (ValueError, OSError, httpx.HTTPError) as exc:
                raise AuthenticationError(
                    f"token request to {self._settings.authority_url} failed: {type(exc).__name__}: "
                    f"{_safe(exc, self._settings)}"
                ) from exc
        if not result or "access_token" not in result:
            raise AuthenticationError(
                f"Microsoft Entra ID refused a token for app {self._settings.client_id} in tenant "
                f"{self._settings.tenant_id}: {describe_failure(result or {})}"
            )
        if force_refresh:
            log.info("obtained a fresh Graph access token (previous one was rejected)")
        return str(result["access_token"])


def _safe(exc: BaseException, settings: GraphSettings) -> str:
    """An exception's text with the client secret blanked out, in case a library echoed it."""
    text = str(exc)
    if settings.client_secret:
        text = text.replace(settings.client_secret, "***")
    return text
