"""The hardened-DC matrix of docs/hardened-dc.md, as far as a Samba DC can play it: TLS 1.2 and 1.3 for each
bind mode, and Samba's strictest `ldap server require strong auth = yes` (simple binds on 389 refused, SASL
binds must sign or seal even inside TLS). What only Windows enforces (LdapEnforceChannelBinding, AD's refusal
of a SASL layer inside TLS) is played by the Windows double: tests/unit/test_directory_kerberos.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest
from tests.integration.test_kerberos import kerberos_settings, krb5_conf

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.errors import DirectoryAuthError
from writeback.testbed.sandbox import samba
from writeback.testbed.sandbox.layout import SandboxPaths

pytestmark = [pytest.mark.samba]
__all__ = ["krb5_conf"]  # the autouse fixture: KRB5_CONFIG at the sandbox's krb5.conf

# Debian's libldap uses GnuTLS, which takes the versions allowed as a priority string in the cipher suite
# option (OPT_X_TLS_PROTOCOL_MAX is not applied by its GnuTLS backend), and names the version "TLS1.2".
TLS = {"1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}


def capped(version: str, opened: list[Any]) -> Any:
    """``ldap.initialize`` capping TLS at ``version``; the connections it opened are kept in ``opened``."""

    def connect(url: str) -> Any:
        conn = ldap.initialize(url)
        conn.set_option(ldap.OPT_X_TLS_CIPHER_SUITE, TLS[version])  # before the session's OPT_X_TLS_NEWCTX
        opened.append(conn)
        return conn

    return connect


def simple(sandbox: Any, url: str) -> DirectorySettings:
    return DirectorySettings(
        urls=(url,),
        bind_dn=sandbox.service_bind_dn,
        bind_password=sandbox.service_bind_password,
        base_dn=sandbox.base_dn,
        ca_file=str(sandbox.ca_file),
    )


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_each_bind_mode_over_tls_12_and_13(sandbox: Any, version: str) -> None:
    modes = {
        "simple over LDAPS": simple(sandbox, sandbox.ldap_url),
        "simple with StartTLS": simple(sandbox, sandbox.starttls_url),
        "Kerberos inside LDAPS": kerberos_settings(sandbox, urls=("ldaps://localhost:636",)),
    }
    for mode, settings in modes.items():
        opened: list[Any] = []
        with LdapDirectory(settings, connect=capped(version, opened)) as d:
            d.check_tls_and_bind()
            assert d.protection == "tls", mode
            assert d.existing_dns([sandbox.base_dn]) == {sandbox.base_dn}
            assert opened[-1].get_option(ldap.OPT_X_TLS_VERSION) == f"TLS{version}", mode


@pytest.fixture
def strong_auth_yes(sandbox: Any) -> Iterator[Path]:
    """The sandbox DC restarted with `ldap server require strong auth = yes`, and put back afterwards. It
    restarts the DC, so it runs only on a sandbox this test session made (not a shared WRITEBACK_SANDBOX_DIR)."""
    if os.environ.get("WRITEBACK_SANDBOX_DIR") and not os.environ.get("WRITEBACK_TEST_RESTART_DC"):
        pytest.skip("restarts the DC: runs on the session's own sandbox (or set WRITEBACK_TEST_RESTART_DC=1)")
    paths = SandboxPaths(Path(sandbox.dir))
    before = paths.smb_conf.read_text(encoding="utf-8")
    paths.smb_conf.write_text(
        samba.set_global_options(before, {"ldap server require strong auth": "yes"}), encoding="utf-8"
    )
    samba.stop(paths)
    samba.start(paths)
    try:
        yield paths.smb_conf
    finally:
        paths.smb_conf.write_text(before, encoding="utf-8")
        samba.stop(paths)
        samba.start(paths)


def test_samba_strong_auth_yes(sandbox: Any, strong_auth_yes: Path) -> None:
    assert samba.global_option(strong_auth_yes.read_text(), "ldap server require strong auth") == "yes"
    # A simple bind on 389 without TLS: strongerAuthRequired, and the error names the modes that work.
    plain = DirectorySettings(
        urls=(sandbox.starttls_url,),
        bind_dn=sandbox.service_bind_dn,
        bind_password=sandbox.service_bind_password,
        base_dn=sandbox.base_dn,
        allow_insecure=True,
    )
    with LdapDirectory(plain) as d, pytest.raises(DirectoryAuthError) as err:
        d.check_tls_and_bind()
    assert "STRONG_AUTH_REQUIRED" in str(err.value) and 'auth = "kerberos"' in str(err.value)
    # Kerberos on 389, signed and sealed: works.
    with LdapDirectory(kerberos_settings(sandbox)) as d:
        d.check_tls_and_bind()
        assert d.protection == "kerberos-sealed (SSF 256)"
    # Kerberos inside TLS: this Samba wants a SASL layer there too, which TLS forbids; the error says so and
    # names the mode that works.
    tls = kerberos_settings(sandbox, urls=("ldaps://localhost:636",))
    with LdapDirectory(tls) as d, pytest.raises(DirectoryAuthError) as err:
        d.check_tls_and_bind()
    assert "Sign or Seal are required" in str(err.value)
    assert "use an ldap:// URL (port 389)" in str(err.value)
    # The simple bind over LDAPS is unaffected.
    with LdapDirectory(simple(sandbox, sandbox.ldap_url)) as d:
        d.check_tls_and_bind()
