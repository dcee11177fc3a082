"""Active Directory adapter: :class:`LdapDirectory` implements :class:`writeback.ports.Directory` with
python-ldap (TLS always verified, paged and ranged reads, batched idempotent writes)."""

from writeback.directory.adapter import LdapDirectory
from writeback.directory.settings import DirectorySettings

__all__ = ["DirectorySettings", "LdapDirectory"]
