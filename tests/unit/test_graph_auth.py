"""MSAL (unchanged) through our httpx-based http_client: secret, certificate, refusal, forced refresh."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from writeback.adapters.graph import GraphClient, GraphSettings
from writeback.adapters.graph.auth import certificate_thumbprint
from writeback.errors import AuthenticationError, ConfigError
from writeback.testbed.tlsutil import self_signed_client_cert

AUTHORITY = "https://login.example.test/tenant-1"
GRAPH = "https://graph.example.test"
SECRET = "the-right-secret-xyz"


class FakeEntra:
    """Just enough of the Microsoft identity platform for MSAL's client credentials flow."""

    def __init__(self, throttle: int = 0) -> None:
        self.token_requests: list[dict[str, list[str]]] = []
        self.issued = 0
        self.throttle = throttle  # answer the next N token requests with 429

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/tenant-1/v2.0/.well-known/openid-configuration":
            base = "https://login.example.test/tenant-1"
            return httpx.Response(
                200,
                json={
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                },
            )
        if path == "/tenant-1/oauth2/v2.0/token":
            form = parse_qs(request.content.decode())
            self.token_requests.append(form)
            if self.throttle:
                self.throttle -= 1
                return httpx.Response(
                    429, headers={"Retry-After": "0.01"}, json={"error": "temporarily_unavailable"}
                )
            if form.get("client_secret", [SECRET])[0] != SECRET:
                return httpx.Response(
                    401,
                    json={
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: abc",
                        "error_codes": [7000215],
                    },
                )
            self.issued += 1
            return httpx.Response(
                200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": f"at-{self.issued}"}
            )
        if request.url.host == "graph.example.test":
            return httpx.Response(200, json={"value": [], "auth": request.headers["Authorization"]})
        return httpx.Response(404, json={})


def client_for(entra: FakeEntra, **credential: Any) -> GraphClient:
    settings = GraphSettings(
        tenant_id="tenant-1", client_id="app-1", authority=AUTHORITY, graph_url=GRAPH, **credential
    )
    return GraphClient(settings, transport=httpx.MockTransport(entra), sleep=lambda _: None)


def test_secret_token_is_obtained_and_cached() -> None:
    entra = FakeEntra()
    client = client_for(entra, client_secret=SECRET)
    assert client.get("/v1.0/groups")["auth"] == "Bearer at-1"
    assert client.get("/v1.0/groups")["auth"] == "Bearer at-1"
    assert len(entra.token_requests) == 1
    form = entra.token_requests[0]
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == [f"{GRAPH}/.default"]
    client.check()


def test_wrong_secret_gives_authentication_error_without_the_secret() -> None:
    entra = FakeEntra()
    client = client_for(entra, client_secret="wrong-secret-abc")
    with pytest.raises(AuthenticationError) as info:
        client.get("/v1.0/groups")
    assert "AADSTS7000215" in str(info.value) and "invalid_client" in str(info.value)
    assert "wrong-secret-abc" not in str(info.value)
    assert "Trace ID" not in str(info.value)


def test_certificate_credential_sends_a_signed_assertion_with_the_sha1_thumbprint() -> None:
    cert_pem, key_pem, thumb = self_signed_client_cert("writeback-test")
    entra = FakeEntra()
    client = client_for(entra, certificate_pem=cert_pem, private_key_pem=key_pem)
    assert client.get("/v1.0/groups")["auth"] == "Bearer at-1"
    form = entra.token_requests[0]
    assert "client_secret" not in form
    assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assertion = form["client_assertion"][0]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS256"
    x5t = base64.urlsafe_b64decode(header["x5t"] + "==").hex().upper()
    assert x5t == thumb == certificate_thumbprint(cert_pem)
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)
    assert thumb == hashlib.sha1(der).hexdigest().upper()
    claims = jwt.decode(
        assertion,
        x509.load_pem_x509_certificate(cert_pem).public_key(),  # type: ignore[arg-type]
        algorithms=["RS256"],
        audience="https://login.example.test/tenant-1/oauth2/v2.0/token",
    )
    assert claims["iss"] == claims["sub"] == "app-1"


def test_expired_token_is_refreshed_through_msal() -> None:
    entra = FakeEntra()
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.example.test":
            calls["n"] += 1
            if request.headers["Authorization"] == "Bearer at-1":
                body = {
                    "error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}
                }
                return httpx.Response(401, json=body)
            return httpx.Response(200, content=json.dumps({"ok": request.headers["Authorization"]}))
        return entra(request)

    settings = GraphSettings(
        tenant_id="tenant-1", client_id="app-1", client_secret=SECRET, authority=AUTHORITY, graph_url=GRAPH
    )
    client = GraphClient(settings, transport=httpx.MockTransport(handler), sleep=lambda _: None)
    assert client.get("/v1.0/groups") == {"ok": "Bearer at-2"}
    assert len(entra.token_requests) == 2 and calls["n"] == 2


def test_unreachable_authority_is_an_authentication_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("name resolution failed")

    settings = GraphSettings(
        tenant_id="tenant-1", client_id="app-1", client_secret=SECRET, authority=AUTHORITY
    )
    client = GraphClient(settings, transport=httpx.MockTransport(handler), sleep=lambda _: None)
    with pytest.raises(AuthenticationError, match="authority") as info:
        client.check()
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"client_secret": "x", "certificate_pem": b"c", "private_key_pem": b"k"},
        {"certificate_pem": b"c"},
        {"client_secret": "x", "graph_url": "http://graph.example.test"},
        {"client_secret": "x", "authority": "http://login.example.test/t"},
        {"client_secret": "x", "max_retries": -1},
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GraphSettings(tenant_id="t", client_id="c", **kwargs)  # type: ignore[arg-type]


def test_throttled_token_endpoint_is_retried_after_retry_after() -> None:
    entra = FakeEntra(throttle=2)
    client = client_for(entra, client_secret=SECRET)
    assert client.get("/v1.0/groups")["auth"] == "Bearer at-1"
    assert len(entra.token_requests) == 3


def test_token_endpoint_throttling_that_never_ends_is_an_authentication_error() -> None:
    entra = FakeEntra(throttle=100)
    client = client_for(entra, client_secret=SECRET)
    with pytest.raises(AuthenticationError):
        client.get("/v1.0/groups")
    assert len(entra.token_requests) == 5  # the first try and TOKEN_RETRIES retries
