"""Active Directory adapter: :class:`LdapDirectory` implements :class:`writeback.core.ports.Directory` with
python-ldap (TLS always verified, paged and ranged reads, batched idempotent writes)."""

from writeback.adapters.directory.adapter import LdapDirectory
from writeback.adapters.directory.settings import DirectorySettings

__all__ = ["DirectorySettings", "LdapDirectory"]
