"""Say *why* a TLS connection to a DC failed, when libldap does not.

libldap built with GnuTLS (Debian, Ubuntu) reports a refused certificate as "Can't contact LDAP server:
(unknown error code)", the same words as a DC that is down. When a connect fails without an OS error, this
module fetches the DC's certificate over a second connection that does not verify it, sends nothing but an
anonymous RootDSE read (never the bind credentials), and verifies the certificate with ``cryptography``
against the configured CA, for the host name of the URL. The verifier's reason ends up in the error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import ldap
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

log = logging.getLogger(__name__)


def _peer_certificate(url: str, timeout: float) -> bytes | None:
    conn = ldap.initialize(url)
    try:
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)  # only to look at the certificate
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.timeout = timeout
        if urlsplit(url).scheme.lower() == "ldap":
            conn.start_tls_s()
        else:
            conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
        der = conn.get_option(ldap.OPT_X_TLS_PEERCERT)
        return der if isinstance(der, bytes) and der else None
    except ldap.LDAPError:
        return None
    finally:
        with contextlib.suppress(ldap.LDAPError):
            conn.unbind_s()


def _trust_store(ca_file: str | None) -> Store | None:
    """The configured CA file, else the system bundle (what libldap uses when no CA file is set)."""
    path = ca_file or ssl.get_default_verify_paths().cafile
    if not path:
        return None
    try:
        with warnings.catch_warnings():
            # System bundles carry a few old roots that newer cryptography releases frown upon; they are
            # only read here to name the problem, never to decide trust.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return Store(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        if ca_file is None:
            return None
        raise ValueError(f"cannot read CA certificates from {ca_file}: {exc}") from exc


def _subject(host: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _explain(exc: VerificationError, host: str, ca_file: str | None, leaf: x509.Certificate) -> str:
    text = str(exc)
    if "subjectAltName" in text:
        return f"the DC's certificate is not valid for the host name {host!r} of the URL ({text})"
    source = ca_file or "the system trust store"
    return (
        f"the DC's certificate, issued by {leaf.issuer.rfc4514_string()!r}, does not chain to a CA in {source}"
        f" ({text})"
    )


def certificate_problem(url: str, ca_file: str | None, timeout: float) -> str | None:
    """Why the DC's certificate fails verification, or None when it verifies or cannot be fetched."""
    host = urlsplit(url).hostname or ""
    der = _peer_certificate(url, timeout)
    if der is None:
        return None
    try:
        store = _trust_store(ca_file)
    except ValueError as exc:
        return str(exc)
    if store is None:
        return "no CA certificates to verify against"
    try:
        leaf = x509.load_der_x509_certificate(der)
        PolicyBuilder().store(store).build_server_verifier(_subject(host)).verify(leaf, [])
    except VerificationError as exc:
        return _explain(exc, host, ca_file, leaf)
    except ValueError as exc:
        log.debug("cannot judge the certificate of %s: %s", url, exc)
        return None
    return None
