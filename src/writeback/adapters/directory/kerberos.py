"""Kerberos for the LDAP bind ([target] auth = "kerberos"): the ticket, where it is kept, and what a failure means.

The bind itself is SASL GSSAPI through python-ldap and Cyrus SASL (connection.py). Cyrus's GSSAPI plugin takes
the initiator's credentials from the default credential cache of MIT krb5, named by ``KRB5CCNAME``: it offers
no way to hand it credentials directly (python-ldap exposes no ``LDAP_OPT_X_SASL_GSS_CREDS``). So:

- with a keytab, :class:`KeytabTicket` gets a TGT for the principal from the keytab with the ``gssapi`` package
  (``gss_acquire_cred_from`` with ``client_keytab`` and ``ccache``, MIT's credential store extension) into a
  credential cache file of its own: ``ccache`` in a directory it creates with mode 0700 (the file is 0600, as
  MIT writes every FILE cache), removed on close. ``KRB5CCNAME`` is pointed at that file for this process, so
  Cyrus finds the ticket and no other user can read it. The ticket is renewed from the keytab before it
  expires: :meth:`KeytabTicket.ensure` is called before every bind, and the session reconnects (binding anew)
  before the ticket its bind used runs out (a Windows DC closes an LDAP connection whose Kerberos ticket has
  expired).
  A MEMORY: cache would keep the ticket off the disk, but it is only shared within one copy of libkrb5, and
  nothing guarantees that the ``gssapi`` wheel and Cyrus's plugin load the same one; a FILE cache works
  either way.
- without a keytab, :class:`HostTicket` uses the credential cache the host keeps renewed (``KRB5CCNAME``, e.g.
  from k5start, sssd or gssproxy) and only checks that it holds a ticket that is still valid.

:func:`diagnose` turns the libraries' messages (MIT krb5's error table, as Cyrus and gssapi quote it, and
Active Directory's bind diagnostics) into what failed and what to fix; it is pure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from writeback.errors import ConfigError, DirectoryAuthError, DirectoryUnavailable

# Renew when less than this much of the ticket's life is left (seconds), and reconnect before the ticket the
# bind used expires by the same margin. AD's default ticket lifetime is 10 hours (Kerberos Policy, "Maximum
# lifetime for user ticket"). More than the 5 minutes of clock skew Kerberos allows: a DC takes a ticket that
# ends within them for expired (measured against Samba: a 300 s ticket is refused, 301 s taken).
RENEW_MARGIN = 600.0
_ENV = "KRB5CCNAME"
# One process, one KRB5CCNAME: tickets of two sessions of the same process share the cache (same principal).
_ENV_LOCK = threading.Lock()


class Ticket(Protocol):
    """A source of Kerberos credentials for the GSSAPI bind."""

    @property
    def principal(self) -> str | None: ...

    @property
    def margin(self) -> float:
        """Seconds before the ticket's end at which it is renewed and connections bound with it bound again."""
        ...

    def ensure(self) -> float:
        """Make the default credential cache hold a valid TGT; return when it expires (``time.time()``)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Diagnosis:
    """What failed in a Kerberos bind and what the operator does about it. ``transient``: the network or the
    KDC, worth retrying; otherwise a setting or the directory must change."""

    what: str
    fix: str
    transient: bool = False

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}"


def _gss_error_text(exc: Exception) -> str:
    """The major and minor messages of a gssapi GSSError (its str() holds both)."""
    return str(exc)


class KeytabTicket:
    """A TGT for ``principal`` from ``keytab``, kept in a credential cache only this process's user can read."""

    def __init__(self, principal: str, keytab: str, *, margin: float = RENEW_MARGIN) -> None:
        self.principal = principal
        self.keytab = keytab
        self.margin = margin
        self._dir: str | None = None
        self._expires = 0.0

    @property
    def ccache(self) -> str | None:
        """The credential cache's name (``FILE:<dir>/ccache``) once a ticket was got, else None."""
        return f"FILE:{self._dir}/ccache" if self._dir else None

    def ensure(self) -> float:
        if self._expires - time.time() > self.margin and self._cache_present():
            _point_env(self.ccache)
            return self._expires
        check_keytab(self.keytab)
        import gssapi  # imported here: only a Kerberos bind needs it (and the C library behind it)
        from gssapi.raw.misc import GSSError

        if self._dir is None:
            runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]  # systemd may list several
            base = runtime or os.environ.get("XDG_RUNTIME_DIR") or None
            self._dir = tempfile.mkdtemp(prefix="writeback-krb5-", dir=base)  # mode 0700
        path = f"{self._dir}/ccache"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a renewal gets a fresh TGT, never the one about to expire
        try:
            name = gssapi.Name(self.principal, gssapi.NameType.kerberos_principal)
            creds = gssapi.Credentials(
                name=name,
                usage="initiate",
                store={b"client_keytab": self.keytab.encode(), b"ccache": f"FILE:{path}".encode()},
            )
            lifetime = creds.lifetime  # MIT gets the TGT from the keytab here at the latest
        except GSSError as exc:
            text = _gss_error_text(exc)
            if "no credentials cache found" in text.lower():
                # MIT takes a ticket from the client keytab only when it holds the principal's key; otherwise
                # it looks in the (new, empty) cache and says so.
                text = f"No key table entry found for {self.principal} in {self.keytab} ({text})"
            raise kerberos_error(text, principal=self.principal, keytab=self.keytab) from exc
        if not os.path.exists(path):
            raise DirectoryAuthError(
                f"Kerberos: no ticket was stored for {self.principal} in {path}; check the keytab and krb5.conf"
            )
        os.chmod(path, 0o600)
        self._expires = time.time() + float(lifetime or 0)
        _point_env(self.ccache)
        return self._expires

    def _cache_present(self) -> bool:
        return self._dir is not None and os.path.exists(f"{self._dir}/ccache")

    def close(self) -> None:
        directory, self._dir, self._expires = self._dir, None, 0.0
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


class HostTicket:
    """The credential cache the host renews (``KRB5CCNAME`` or krb5.conf's default): only checked here."""

    def __init__(self, principal: str | None = None, *, margin: float = RENEW_MARGIN) -> None:
        self.principal = principal
        self.margin = margin

    def ensure(self) -> float:
        import gssapi
        from gssapi.raw.misc import GSSError

        try:
            name = gssapi.Name(self.principal, gssapi.NameType.kerberos_principal) if self.principal else None
            creds = gssapi.Credentials(name=name, usage="initiate")
            lifetime = creds.lifetime
        except GSSError as exc:
            cache = os.environ.get(_ENV, "krb5.conf's default_ccache_name")
            raise DirectoryAuthError(
                f"Kerberos: no valid ticket{' for ' + self.principal if self.principal else ''} in the credential "
                f"cache {cache} ({_gss_error_text(exc)}); renew it on the host (k5start, sssd, gssproxy), or set "
                "target.keytab so writeback gets and renews the ticket itself"
            ) from exc
        return time.time() + float(lifetime or 0)

    def close(self) -> None:
        return None


def _point_env(ccache: str | None) -> None:
    if ccache:
        with _ENV_LOCK:
            os.environ[_ENV] = ccache


def check_keytab(keytab: str) -> None:
    """Refuse a keytab that cannot be read, or that other users may read (it is the account's password)."""
    try:
        st = os.stat(keytab)
        with open(keytab, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise ConfigError(
            f"the keytab {keytab} cannot be read ({exc.strerror}); export it for the service's user "
            "(docs/least-privilege.md, Kerberos) or give it with systemd's LoadCredential= (docs/service.md)",
            key="target.keytab",
        ) from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"the keytab {keytab} is not a file", key="target.keytab")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the keytab {keytab} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}): it holds the "
            f"account's keys. Run `chmod 600 {keytab}`",
            key="target.keytab",
        )
    if head[:1] != b"\x05":
        raise ConfigError(
            f"{keytab} is not a keytab (MIT keytab files start with version 5); export it with ktpass, "
            "samba-tool domain exportkeytab or msktutil",
            key="target.keytab",
        )


# -- what a failure means ----------------------------------------------------------------------------------

# (regular expressions for the message, lower case) -> diagnosis. Words from MIT krb5's error table
# (krb5_err.et), Cyrus SASL's, and Active Directory's bind diagnostics; the first match wins, so the specific
# come first.
_PATTERNS: tuple[tuple[tuple[str, ...], Diagnosis], ...] = (
    (
        ("80090346",),
        Diagnosis(
            "the DC enforces LDAP channel binding (LdapEnforceChannelBinding = 2) and refused a GSSAPI bind "
            "inside TLS without a channel binding token: python-ldap and Cyrus SASL 2.1.28 send none "
            "(docs/hardened-dc.md)",
            'use an ldap:// URL (port 389) with auth = "kerberos": the bind is then signed and sealed by '
            "Kerberos and channel binding does not apply; or set LdapEnforceChannelBinding to 1",
        ),
    ),
    (
        ("signing/sealing when using tls/ssl", "00002029", "sign or seal are not allowed if tls"),
        Diagnosis(
            "the DC refuses a SASL security layer (signing or sealing) inside TLS",
            "this writeback asks for none over ldaps://; check that nothing (ldap.conf SASL_SECPROPS "
            "minssf) requires one there",
        ),
    ),
    (
        ("sign or seal are required",),
        Diagnosis(
            "the DC refuses a Kerberos bind that neither signs nor seals, even inside TLS (Samba's "
            "`ldap server require strong auth = yes`; a Windows DC takes it)",
            'use an ldap:// URL (port 389) with auth = "kerberos": signed and sealed, it works under every '
            "setting; or on the Samba DC set `ldap server require strong auth = allow_sasl_over_tls`",
        ),
    ),
    (
        ("clock skew", "skew too great"),
        Diagnosis(
            "the clocks of this host and the KDC differ by more than allowed (Kerberos allows 5 minutes)",
            "synchronise this host's clock with the domain (chrony or systemd-timesyncd against the DCs)",
            transient=False,
        ),
    ),
    (
        ("ticket expired",),
        Diagnosis(
            "the Kerberos ticket has expired, or ends within the 5 minutes of clock skew the DC allows",
            "with target.keytab writeback renews its own ticket; a credential cache the host keeps must be "
            "renewed by the host (k5start, sssd) well before its end; check the clocks too",
        ),
    ),
    (
        ("cannot contact any kdc", "cannot find kdc", "unable to reach any kdc", "kdc unreachable"),
        Diagnosis(
            "no KDC of the realm could be reached",
            "check krb5.conf's [realms] kdc entries (or DNS SRV records _kerberos._tcp.<domain>) and that "
            "port 88 of the DCs is open from this host",
            transient=True,
        ),
    ),
    (
        ("cannot find kdc for realm", "cannot resolve network address for kdc"),
        Diagnosis(
            "the realm's KDC is unknown",
            "add the realm to krb5.conf's [realms], or enable dns_lookup_kdc",
        ),
    ),
    (
        (r"server .*not found in kerberos database", "s_principal_unknown"),
        Diagnosis(
            "the DC's service principal (SPN ldap/<host of the URL>) is not registered in the domain",
            "use the DC's host name as registered in AD in target.ldap_urls (not an IP address or an alias), "
            "or register the SPN: setspn -S ldap/<host> <DC account>",
        ),
    ),
    (
        (r"client .*not found in kerberos database", "c_principal_unknown"),
        Diagnosis(
            "the principal is not known to the KDC",
            "check target.principal (the account's sAMAccountName@REALM; a gMSA's ends in $) and that the "
            "account exists and is enabled",
        ),
    ),
    (
        ("no key table entry found", "key table entry not found"),
        Diagnosis(
            "the keytab holds no key for this principal",
            "compare target.principal with `klist -k <keytab>` (a gMSA's principal ends in $), or export the "
            "keytab again for this principal",
        ),
    ),
    (
        (
            "preauthentication failed",
            "key version",
            "kvno",
            "integrity check on decrypted field failed",
            "decrypt integrity check failed",
        ),
        Diagnosis(
            "the keytab does not hold the account's current key (wrong key version: the password changed, or "
            "a gMSA rotated its password, after the keytab was made)",
            "export the keytab again (ktpass, samba-tool domain exportkeytab, or for a gMSA the next keytab "
            "from its managed password; docs/least-privilege.md)",
        ),
    ),
    (
        ("keytab", "key table"),
        Diagnosis(
            "the keytab cannot be used",
            "check target.keytab: the file must exist, be readable by the service's user and hold the "
            "principal's keys",
        ),
    ),
    (
        (
            "too weak",
            "no worthy mechs",
            r"\bssf\b",
            "confidentiality required",
            "integrity checking",
            "strongerauthrequired",
        ),
        Diagnosis(
            "the Kerberos bind could not be signed and sealed (SASL security layer refused or too weak)",
            "the DC must offer Kerberos sealing on port 389 (every Windows DC does; check that the account's "
            "msDS-SupportedEncryptionTypes include AES), or use an ldaps:// URL",
        ),
    ),
)


def diagnose(message: str) -> Diagnosis | None:
    """What a Kerberos or GSSAPI bind failure means, from the libraries' message; None when not recognised."""
    text = message.lower()
    for patterns, diagnosis in _PATTERNS:
        if any(re.search(p, text) for p in patterns):
            return diagnosis
    return None


def kerberos_error(
    message: str, *, principal: str | None, keytab: str | None = None, url: str | None = None
) -> DirectoryAuthError | DirectoryUnavailable:
    """The writeback error for a failed Kerberos step: what failed, where, and what to fix."""
    who = f" as {principal}" if principal else ""
    where = f" to {url}" if url else ""
    source = f" (keytab {keytab})" if keytab else ""
    diagnosis = diagnose(message)
    if diagnosis is None:
        return DirectoryAuthError(f"Kerberos bind{who}{where}{source} failed: {message}")
    spn = f"ldap/{urlsplit(url).hostname}" if url and urlsplit(url).hostname else None
    if spn and "SPN ldap/<host of the URL>" in diagnosis.what:
        diagnosis = Diagnosis(diagnosis.what.replace("ldap/<host of the URL>", spn), diagnosis.fix)
    text = f"Kerberos bind{who}{where}{source} failed: {diagnosis} [{message.strip()}]"
    return DirectoryUnavailable(text) if diagnosis.transient else DirectoryAuthError(text)


__all__ = [
    "RENEW_MARGIN",
    "Diagnosis",
    "HostTicket",
    "KeytabTicket",
    "Ticket",
    "check_keytab",
    "diagnose",
    "kerberos_error",
]
