"""The one place where python-ldap exceptions become writeback errors.

Every LDAP call of the adapter goes through :func:`translate_ldap_error`, so callers only ever see the
:mod:`writeback.errors` tree. Messages name the server, the operation and the object, quote the server's own
diagnostic, and never contain the bind password (it is not passed in here at all).
"""

from __future__ import annotations

import ldap

from writeback.errors import DirectoryAuthError, DirectoryError, DirectoryUnavailable, DirectoryWriteError

# Transient: the server or the network, not the request. DirectoryUnavailable tells the caller to retry later.
_UNAVAILABLE: tuple[type[ldap.LDAPError], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.TIMELIMIT_EXCEEDED,
    ldap.BUSY,
    ldap.UNAVAILABLE,
)
# The bind itself was refused: a credential or security-policy problem the operator must fix.
_AUTH: tuple[type[ldap.LDAPError], ...] = (
    ldap.INVALID_CREDENTIALS,
    ldap.INAPPROPRIATE_AUTH,
    ldap.STRONG_AUTH_REQUIRED,
    ldap.CONFIDENTIALITY_REQUIRED,
)
_TLS_WORDS = ("certificate", "verify failed", "not trusted", "issuer", "x509", "tls", "ssl")


def result_name(exc: ldap.LDAPError) -> str:
    """The LDAP result name, e.g. 'ALREADY_EXISTS' (python-ldap names its classes after them)."""
    return type(exc).__name__


def server_message(exc: ldap.LDAPError) -> str:
    """The server's diagnostic ('info'), else python-ldap's description of the result code."""
    detail = exc.args[0] if exc.args else None
    if isinstance(detail, dict):
        info = str(detail.get("info") or "").strip()
        desc = str(detail.get("desc") or "").strip()
        if info and desc and info != desc:
            return f"{desc}: {info}"
        return info or desc
    return str(detail or "")


def is_certificate_failure(exc: ldap.LDAPError) -> bool:
    """True when a connect error was caused by TLS certificate verification (OpenSSL or GnuTLS wording)."""
    text = server_message(exc).lower()
    return any(word in text for word in _TLS_WORDS)


def tls_hint(url: str) -> str:
    return (
        f"certificate verify failed for {url}; set target.ca_file to the CA that signed the DC's certificate"
    )


# Results a DC gives for the value written itself (RFC 4511 4.1.9; AD's own: MS-ADTS 3.1.1.5): the same write
# is refused every time, however long one waits. Access rights, a name taken by another object or a busy DC can
# change, so those stay retried.
_REFUSED_FOR_THE_VALUE = (
    ldap.CONSTRAINT_VIOLATION,
    ldap.INVALID_SYNTAX,
    ldap.INVALID_DN_SYNTAX,
    ldap.NAMING_VIOLATION,
    ldap.OBJECT_CLASS_VIOLATION,
    ldap.UNDEFINED_TYPE,
    ldap.NOT_ALLOWED_ON_RDN,
)


def translate_ldap_error(
    exc: ldap.LDAPError,
    *,
    action: str,
    url: str | None = None,
    dn: str | None = None,
    write: bool = False,
    bind_dn: str | None = None,
    secret: str | None = None,
) -> DirectoryError:
    """Build the writeback error for ``exc``. The caller raises it ``from exc``.

    ``action`` says what was attempted ('search', 'add', 'bind', …); ``write`` marks the refusal of a write,
    which becomes :class:`DirectoryWriteError` carrying the DN and 'RESULT_NAME: server message'.
    ``secret`` (the bind password) is blanked out should a server ever echo it back.
    """
    name = result_name(exc)
    message = server_message(exc)
    if secret:
        message = message.replace(secret, "***")
    where = f" on {url}" if url else ""
    target = f" of {dn}" if dn else ""
    if isinstance(exc, _UNAVAILABLE):
        if url and is_certificate_failure(exc):
            return DirectoryUnavailable(f"{tls_hint(url)} ({message})")
        return DirectoryUnavailable(f"{action}{target}{where} failed: {name}: {message}")
    if isinstance(exc, _AUTH):
        who = f" as {bind_dn}" if bind_dn else ""
        hint = (
            "check the bind DN and password"
            if isinstance(exc, ldap.INVALID_CREDENTIALS)
            else (
                'the DC requires a protected connection: use ldaps:// or StartTLS, or auth = "kerberos" '
                "(signed and sealed on port 389)"
            )
        )
        return DirectoryAuthError(f"bind{who}{where} refused: {name}: {message}; {hint}")
    if write:
        result = f"{name}: {message}" if message else name
        permanent = isinstance(exc, _REFUSED_FOR_THE_VALUE)
        return DirectoryWriteError(
            f"{action}{target}{where} refused: {result}", dn=dn, result=result, permanent=permanent
        )
    return DirectoryError(f"{action}{target}{where} failed: {name}: {message}")
