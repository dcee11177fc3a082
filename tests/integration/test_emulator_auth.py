"""Tokens from the emulator with msal itself (secret, certificate), refusals, and bearer checks on Graph."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import msal
import pytest
import requests

from writeback.testbed.emulator.testing import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    EmulatorHandle,
    run_emulator,
    small_tenant,
)
from writeback.testbed.tlsutil import self_signed_client_cert

pytestmark = pytest.mark.emulator

CERT_PEM, KEY_PEM, THUMBPRINT = self_signed_client_cert("writeback-test-app")


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(small_tenant(certificates=(CERT_PEM.decode(),)), tmp_path) as handle:
        yield handle


def _session(handle: EmulatorHandle) -> requests.Session:
    # trust_env=False: REQUESTS_CA_BUNDLE in the environment would otherwise override the test CA.
    session = requests.Session()
    session.verify = handle.ca_file
    session.trust_env = False
    return session


def _msal_app(handle: EmulatorHandle, credential: object) -> msal.ConfidentialClientApplication:
    # A fresh app per call: msal caches refusals (400 for 60 s).
    return msal.ConfidentialClientApplication(
        TEST_CLIENT_ID,
        client_credential=credential,
        authority=handle.authority,
        http_client=_session(handle),
        instance_discovery=False,
    )


def _graph_get(handle: EmulatorHandle, token: str | None, path: str = "/v1.0/users") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(verify=handle.ssl_context()) as client:
        return client.get(handle.graph_url + path, headers=headers)


def test_msal_gets_a_token_with_the_client_secret_and_graph_accepts_it(emu: EmulatorHandle) -> None:
    result = _msal_app(emu, TEST_CLIENT_SECRET).acquire_token_for_client(scopes=[f"{emu.graph_url}/.default"])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert 3000 < result["expires_in"] <= 3599
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["tid"] == emu.tenant_id and claims["appid"] == TEST_CLIENT_ID
    response = _graph_get(emu, result["access_token"])
    assert response.status_code == 200
    assert len(response.json()["value"]) == 10


def test_msal_gets_a_token_with_a_certificate(emu: EmulatorHandle) -> None:
    credential = {"private_key": KEY_PEM.decode(), "thumbprint": THUMBPRINT}
    result = _msal_app(emu, credential).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result.get("error_description")
    assert _graph_get(emu, result["access_token"]).status_code == 200


def test_msal_certificate_that_is_not_registered_is_refused(emu: EmulatorHandle) -> None:
    _, other_key, other_thumb = self_signed_client_cert("someone-else")
    credential = {"private_key": other_key.decode(), "thumbprint": other_thumb}
    result = _msal_app(emu, credential).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert result.get("error") == "invalid_client"
    assert 700027 in result["error_codes"]


def test_wrong_secret_is_refused_in_aad_shape_without_echoing_it(emu: EmulatorHandle) -> None:
    result = _msal_app(emu, "not-the-secret").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)
    assert "not-the-secret" not in str(result)


def test_assertion_for_another_audience_is_refused(emu: EmulatorHandle) -> None:
    now = int(time.time())
    assertion = jwt.encode(
        {
            "aud": "https://elsewhere.example/token",
            "iss": TEST_CLIENT_ID,
            "sub": TEST_CLIENT_ID,
            "exp": now + 300,
        },
        KEY_PEM,
        algorithm="RS256",
        headers={"x5t": jwt.utils.base64url_encode(bytes.fromhex(THUMBPRINT)).decode()},
    )
    with httpx.Client(verify=emu.ssl_context()) as client:
        response = client.post(
            f"{emu.authority}/oauth2/v2.0/token",
            data={
                "client_id": TEST_CLIENT_ID,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_openid_configuration_and_unknown_tenant(emu: EmulatorHandle) -> None:
    with httpx.Client(verify=emu.ssl_context()) as client:
        config = client.get(f"{emu.authority}/v2.0/.well-known/openid-configuration").json()
        unknown = client.post(
            f"{emu.graph_url}/99999999-0000-0000-0000-000000000000/oauth2/v2.0/token",
            data={"grant_type": "client_credentials"},
        )
        keys = client.get(config["jwks_uri"]).json()
    assert config["token_endpoint"] == f"{emu.authority}/oauth2/v2.0/token"
    assert config["issuer"] == f"{emu.authority}/v2.0"
    assert {"authorization_endpoint", "jwks_uri"} <= set(config)
    assert keys["keys"][0]["kty"] == "RSA"
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]


@pytest.mark.parametrize("token", [None, "garbage.token.value", "eyJhbGciOiJub25lIn0.e30."])
def test_graph_refuses_missing_or_bad_tokens(emu: EmulatorHandle, token: str | None) -> None:
    response = _graph_get(emu, token)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])


def test_short_token_lifetime_makes_tokens_expire(emu: EmulatorHandle) -> None:
    emu.set_token_lifetime(1)
    result = _msal_app(emu, TEST_CLIENT_SECRET).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert result["expires_in"] == 1
    assert _graph_get(emu, result["access_token"]).status_code == 200
    time.sleep(1.2)
    expired = _graph_get(emu, result["access_token"])
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


def test_revoked_tokens_are_refused(emu: EmulatorHandle) -> None:
    token = emu.token()
    assert _graph_get(emu, token).status_code == 200
    emu.admin("faults", {"revoke_tokens": True})
    assert _graph_get(emu, token).status_code == 401


def test_token_response_has_the_v2_fields_only(emu: EmulatorHandle) -> None:
    # "Microsoft identity platform and the OAuth 2.0 client credentials flow", successful response:
    # token_type, expires_in, access_token (and ext_expires_in); expires_on/not_before/resource are v1.0's.
    with httpx.Client(verify=emu.ssl_context()) as client:
        response = client.post(
            f"{emu.authority}/oauth2/v2.0/token",
            data={
                "client_id": emu.client_id,
                "client_secret": emu.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    assert response.headers["request-id"] and response.headers["client-request-id"]
