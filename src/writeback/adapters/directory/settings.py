"""Connection settings of the Active Directory adapter.

A frozen value checked when built, so a bad URL or page size fails at configuration time with the field name,
not later in the middle of a reconcile pass. The bind password is kept out of ``repr`` so that logging the
settings can never leak it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from writeback.errors import ConfigError

_SCHEMES = ("ldaps", "ldap")


def _check_url(url: str, key: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise ConfigError(f"{url!r} is not an ldap:// or ldaps:// URL with a host", key=key)


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """How to reach and bind to the domain controllers.

    - ``urls``: DCs tried in order (failover). ``ldaps://`` uses TLS from the start; ``ldap://`` is upgraded
      with StartTLS, and stays plain only when ``allow_insecure`` is set (test labs only).
    - ``bind_dn`` / ``bind_password``: a simple bind; the password never appears in repr, logs or errors.
    - ``auth``: "simple" (that bind) or "kerberos": SASL GSSAPI as ``principal``, with a ticket from ``keytab``
      (renewed by writeback) or, without one, from the credential cache the host renews. An ``ldap://`` URL is
      then signed and sealed by Kerberos (no StartTLS: AD refuses a SASL layer inside TLS); an ``ldaps://`` URL
      binds inside TLS without one. ``bind_dn`` may be empty: the account is found from the principal.
    - ``base_dn``: where managed groups are searched.
    - ``ca_file``: PEM bundle of the CA that signed the DCs' certificates (system CAs when None). Certificate
      verification is always on.
    - ``gc_urls``: Global Catalog servers (``ldaps://dc:3269``), tried in order like ``urls``, used to resolve
      members across the forest; the domain is searched when empty.
    - ``timeout``: seconds for connecting and for each operation. A page of a paged search is waited for at
      least as long as the DC itself may work on it (MaxQueryDuration, 120 s; see connection.page_wait).
    - ``page_size``: entries per page of a paged search (a Windows DC returns at most MaxPageSize, 1,000).
    - ``max_values_per_modify``: member values sent in one add or modify. Default 5,000: Microsoft's "Active
      Directory Domain Services maximum limits" page recommends no more than 5,000 operations per LDAP
      transaction, and 5,000 DNs stay far below MaxReceiveBuffer (10,485,760 bytes, KB 315071). A DC with
      stricter limits answers adminLimitExceeded; the adapter then halves the batch and keeps the smaller size.
    """

    urls: tuple[str, ...]
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    ca_file: str | None = None
    gc_urls: tuple[str, ...] = ()
    allow_insecure: bool = False
    timeout: float = 30.0
    page_size: int = 1000
    max_values_per_modify: int = 5000
    auth: str = "simple"
    keytab: str | None = None
    principal: str | None = None

    @property
    def kerberos(self) -> bool:
        return self.auth == "kerberos"

    def __post_init__(self) -> None:
        # A single URL string would otherwise be iterated character by character.
        for name in ("urls", "gc_urls"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.urls:
            raise ConfigError("at least one LDAP URL is required", key="urls")
        for url in self.urls:
            _check_url(url, "urls")
        for url in self.gc_urls:
            _check_url(url, "gc_urls")
        if self.auth not in ("simple", "kerberos"):
            raise ConfigError('must be "simple" or "kerberos"', key="auth")
        if self.kerberos and self.keytab and not self.principal:
            raise ConfigError("a keytab needs the principal whose keys it holds", key="principal")
        if not self.base_dn:
            raise ConfigError("base_dn is required", key="base_dn")
        if self.timeout <= 0:
            raise ConfigError("must be a positive number of seconds", key="timeout")
        if not 1 <= self.page_size <= 100_000:
            raise ConfigError("must be between 1 and 100000", key="page_size")
        if not 1 <= self.max_values_per_modify <= 100_000:
            raise ConfigError("must be between 1 and 100000", key="max_values_per_modify")
