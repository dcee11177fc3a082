"""Microsoft identity platform, as far as a daemon app needs it: client credentials and bearer checks.

Access tokens are real RS256 JWTs shaped like Graph's app-only tokens (``aud`` Graph, ``appid``, ``tid``,
``roles``), signed with a key kept in the data directory, so tokens stay valid across an emulator restart
and the ``jwks_uri`` can publish the key. Client assertions are checked with PyJWT against the
certificates registered for the app (``x5t`` / ``x5t#S256`` choose the certificate), the way Entra does.
Secrets are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from writeback.testbed.emulator.apierror import GraphApiError

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_ROLES = (
    "Directory.Read.All",
    "Group.ReadWrite.All",
    "User.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "Group-OnPremisesSyncBehavior.ReadWrite.All",  # beta onPremisesSyncBehavior (Group SOA)
    "User-OnPremisesSyncBehavior.ReadWrite.All",  # beta onPremisesSyncBehavior (User SOA)
)
DEFAULT_LIFETIME = 3599


class AadError(Exception):
    """A token-endpoint refusal in the identity platform's own error shape (not Graph's)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        super().__init__(f"{error}: AADSTS{code}")

    def body(self) -> dict[str, Any]:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The token-signing key: created once (mode 0600) and reused, so tokens outlive a restart."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(pem)
    tmp.replace(path)
    return key


class AccessTokens:
    """Issues and checks Graph access tokens for one tenant."""

    def __init__(self, tenant_id: str, key: rsa.RSAPrivateKey) -> None:
        self.tenant_id = tenant_id
        self._key = key
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(public_der)
        self.kid = _b64url(digest.finalize())[:27]
        self.lifetime = DEFAULT_LIFETIME  # seconds; the admin API shortens it to test token expiry
        self.not_before = 0  # tokens issued before this (epoch seconds) are revoked
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, app: Mapping[str, Any]) -> tuple[str, int]:
        now = int(time.time())
        client_id = str(app["client_id"])
        claims = {
            "aud": GRAPH_AUDIENCES[0],
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "appid": client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}")),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}")),
            "tid": self.tenant_id,
            "roles": list(app.get("roles") or DEFAULT_ROLES),
            "ver": "1.0",
            "uti": _b64url(uuid.uuid4().bytes),
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return token, self.lifetime

    def revoke_all(self) -> None:
        """Every token issued so far is refused from now on (clients must fetch a new one)."""
        self.not_before = int(time.time()) + 1
        self._verified.clear()

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid bearer token, else Graph's 401 ``InvalidAuthenticationToken``."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise _unauthorized("Access token is empty.")
        token = authorization[7:].strip()
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(
                    token,
                    self._key.public_key(),
                    algorithms=["RS256"],
                    audience=list(GRAPH_AUDIENCES),
                    options={"require": ["exp", "iat", "aud", "tid"]},
                )
            except jwt.ExpiredSignatureError as exc:
                raise _unauthorized("Lifetime validation failed, the token is expired.") from exc
            except jwt.InvalidAudienceError as exc:
                raise _unauthorized("Access token validation failure. Invalid audience.") from exc
            except jwt.PyJWTError as exc:
                raise _unauthorized("Access token validation failure.") from exc
            if claims.get("tid") != self.tenant_id:
                raise _unauthorized("Access token validation failure. Invalid tenant.")
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = claims
        if claims["exp"] <= time.time():
            raise _unauthorized("Lifetime validation failed, the token is expired.")
        if claims["iat"] < self.not_before:
            raise _unauthorized("Access token has been revoked.")
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()

        def b64int(value: int) -> str:
            return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64int(numbers.n), "e": b64int(numbers.e)}
            ]
        }


def _unauthorized(message: str) -> GraphApiError:
    return GraphApiError(
        401,
        "InvalidAuthenticationToken",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
    )


# ---------------------------------------------------------------------------- the token endpoint


def parse_form(body: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` -> dict (first value wins), without python-multipart."""
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


def _certificates(app: Mapping[str, Any]) -> list[x509.Certificate]:
    certs = []
    for pem in app.get("certificates") or []:
        try:
            certs.append(x509.load_pem_x509_certificate(str(pem).encode("ascii")))
        except ValueError:
            continue  # a broken registration entry cannot match any assertion
    return certs


def _thumbprints(cert: x509.Certificate) -> tuple[str, str]:
    sha1 = cert.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition
    return _b64url(sha1), _b64url(cert.fingerprint(hashes.SHA256()))


def check_assertion(assertion: str, app: Mapping[str, Any], audiences: Sequence[str]) -> None:
    """Verify a client assertion JWT like Entra: registered certificate, aud, iss = sub = client_id, exp."""
    client_id = str(app["client_id"])
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AadError(400, "invalid_request", 50027, "JWT token is invalid or is malformed.") from exc
    certs = _certificates(app)
    # Thumbprints are base64url; some clients (msal) keep the '=' padding, Entra accepts both.
    x5t = str(header.get("x5t") or "").rstrip("=") or None
    x5t256 = str(header.get("x5t#S256") or "").rstrip("=") or None
    if x5t or x5t256:
        certs = [
            c
            for c in certs
            if (x5t and _thumbprints(c)[0] == x5t) or (x5t256 and _thumbprints(c)[1] == x5t256)
        ]
    if not certs:
        raise AadError(
            401,
            "invalid_client",
            700027,
            f"The certificate with identifier used to sign the client assertion is not registered on "
            f"application. [Reason - The key was not found., Thumbprint of key used by client: "
            f"'{x5t or x5t256}'] App Id: {client_id}",
        )
    last_error: Exception | None = None
    for cert in certs:
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=list(audiences),
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AadError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise AadError(
                401,
                "invalid_client",
                700212,
                "Client assertion audience claim does not match the token endpoint.",
            ) from exc
        except jwt.PyJWTError as exc:
            last_error = exc
            continue
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise AadError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        return
    raise AadError(
        401, "invalid_client", 700027, "Client assertion failed signature validation."
    ) from last_error


def authenticate_client(
    form: Mapping[str, str],
    authorization: str | None,
    apps: Sequence[Mapping[str, Any]],
    tenant_id: str,
    token_audiences: Sequence[str],
) -> Mapping[str, Any]:
    """The app a client-credentials request authenticates as, or :class:`AadError` saying why not."""
    if form.get("grant_type") != "client_credentials":
        raise AadError(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; only 'client_credentials' is available here.",
        )
    basic = _basic_credentials(authorization)
    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    app = next((a for a in apps if str(a.get("client_id")) == client_id), None)
    if app is None:
        raise AadError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant_id}'.",
        )
    scope = form.get("scope", "")
    if not scope or not all(s.endswith("/.default") for s in scope.split()):
        raise AadError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
        )
    assertion = form.get("client_assertion")
    secret = form.get("client_secret") or (basic[1] if basic else None)
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AadError(
                400, "invalid_request", 700022, "The client_assertion_type parameter is not valid."
            )
        check_assertion(assertion, app, token_audiences)
        return app
    if secret is not None:
        registered = app.get("client_secret")
        if not registered or not hmac.compare_digest(str(registered).encode(), secret.encode()):
            raise AadError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        return app
    raise AadError(
        401,
        "invalid_client",
        7000216,
        "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
    )


def openid_configuration(base: str, tenant_id: str) -> dict[str, Any]:
    """What msal reads from ``{authority}/v2.0/.well-known/openid-configuration``."""
    root = f"{base}/{tenant_id}"
    return {
        "issuer": f"{root}/v2.0",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
        "request_uri_parameter_supported": False,
        "tenant_region_scope": None,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": base.split("://", 1)[-1],
    }
