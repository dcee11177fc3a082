"""The Kerberos bind against the sandbox DC's own KDC (Samba, realm CORP.EXAMPLE.TEST): sealed on 389 and
inside TLS on 636, the ticket kept where only its owner reads it, the DC's strong-auth rule, and each failure
`config check` must diagnose, produced for real: KDC unreachable, clock skew (faketime), principal unknown,
keytab unreadable, keytab of an old key version, SPN missing. (Sealing refused cannot be produced against this
DC, which always offers it: its diagnosis is unit-tested on Cyrus SASL's own message,
tests/unit/test_directory_kerberos.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.directory.kerberos import KeytabTicket
from writeback.errors import ConfigError, DirectoryAuthError, DirectoryError, DirectoryUnavailable
from writeback.testbed.sandbox import sandbox_up
from writeback.testbed.sandbox.kerberos import export_keytab, principal
from writeback.testbed.sandbox.layout import SandboxPaths

pytestmark = [pytest.mark.samba]


@pytest.fixture(autouse=True)
def krb5_conf(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not sandbox.krb5_conf or not sandbox.service_keytab:
        pytest.fail(f"the sandbox in {sandbox.dir} has no KDC or keytab; run `writeback sandbox up`")
    monkeypatch.setenv("KRB5_CONFIG", str(sandbox.krb5_conf))
    monkeypatch.delenv("KRB5CCNAME", raising=False)
    return Path(sandbox.krb5_conf)


def kerberos_settings(sandbox: Any, **overrides: Any) -> DirectorySettings:
    values: dict[str, Any] = {
        "urls": (sandbox.kerberos_url,),
        "bind_dn": "",
        "bind_password": "",
        "base_dn": sandbox.base_dn,
        "ca_file": str(sandbox.ca_file),
        "auth": "kerberos",
        "keytab": str(sandbox.service_keytab),
        "principal": sandbox.service_principal,
        "timeout": 15.0,
    }
    values.update(overrides)
    return DirectorySettings(**values)


def test_kerberos_binds_sealed_on_389_and_inside_tls_on_636_with_a_private_ticket(sandbox: Any) -> None:
    keytab = Path(sandbox.service_keytab)
    assert stat.S_IMODE(keytab.stat().st_mode) == 0o600
    for url, protection in (
        (sandbox.kerberos_url, "kerberos-sealed (SSF 256)"),
        ("ldaps://localhost:636", "tls"),
    ):
        directory = LdapDirectory(
            kerberos_settings(sandbox, urls=(url,), gc_urls=("ldaps://localhost:3269",))
        )
        try:
            directory.check_tls_and_bind()
            assert directory.protection == protection
            assert directory.account_dn() == sandbox.service_bind_dn
            assert directory.existing_dns([sandbox.groups_ou]) == {sandbox.groups_ou}
            cache = os.environ["KRB5CCNAME"]
            assert cache.startswith("FILE:")
            path = Path(cache[len("FILE:") :])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert path.parent.stat().st_uid == os.geteuid()
        finally:
            directory.close()
        assert not path.parent.exists(), "the ticket's directory is removed on close"


def test_the_dc_requires_strong_auth_a_simple_bind_on_389_fails_kerberos_on_389_works(sandbox: Any) -> None:
    smb_conf = SandboxPaths(Path(sandbox.dir)).smb_conf
    shown = subprocess.run(
        ["testparm", "-s", "--parameter-name=ldap server require strong auth", str(smb_conf)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "allow_sasl_over_tls"  # "yes", except SASL without a layer inside TLS
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
    with LdapDirectory(kerberos_settings(sandbox)) as d:
        d.check_tls_and_bind()
        assert d.protection.startswith("kerberos-sealed")


def test_kdc_unreachable(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "krb5.conf"
    conf.write_text(Path(sandbox.krb5_conf).read_text().replace("127.0.0.1:88", "127.0.0.1:9"))
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    with LdapDirectory(kerberos_settings(sandbox)) as d, pytest.raises(DirectoryUnavailable) as err:
        d.check_tls_and_bind()
    assert "no KDC of the realm could be reached" in str(err.value) and "port 88" in str(err.value)


def test_spn_missing_when_the_url_names_the_dc_by_address(sandbox: Any) -> None:
    # SPN ldap/127.0.0.1 is registered nowhere (the sandbox DC has ldap/<its name> and ldap/localhost).
    with (
        LdapDirectory(kerberos_settings(sandbox, urls=("ldap://127.0.0.1:389",))) as d,
        pytest.raises(DirectoryAuthError) as err,
    ):
        d.check_tls_and_bind()
    text = str(err.value)
    assert "service principal (SPN ldap/127.0.0.1) is not registered" in text and "setspn -S" in text


def test_keytab_unreadable(sandbox: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.keytab"
    with (
        LdapDirectory(kerberos_settings(sandbox, keytab=str(missing))) as d,
        pytest.raises(ConfigError, match="cannot be read") as err,
    ):
        d.check_tls_and_bind()
    assert err.value.key == "target.keytab"


@pytest.fixture
def kerberos_user(sandbox: Any, ldap_conn: Any, test_ou: str) -> Iterator[tuple[str, str]]:
    """A user with a password (so with Kerberos keys) in the test's OU: its sAMAccountName and DN."""
    sam = f"krb-{uuid.uuid4().hex[:8]}"
    dn = f"CN={sam},{test_ou}"
    password = f'"Kb-{uuid.uuid4().hex}-9z"'.encode("utf-16-le")
    ldap_conn.add_s(
        dn,
        [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"user"]),
            ("sAMAccountName", [sam.encode()]),
            ("unicodePwd", [password]),
            ("userAccountControl", [b"512"]),
        ],
    )
    yield sam, dn


def test_keytab_of_an_old_key_version(
    sandbox: Any, ldap_conn: Any, kerberos_user: tuple[str, str], tmp_path: Path
) -> None:
    sam, dn = kerberos_user
    keytab = tmp_path / "user.keytab"
    export_keytab(SandboxPaths(Path(sandbox.dir)), sam, keytab)
    with LdapDirectory(kerberos_settings(sandbox, keytab=str(keytab), principal=principal(sam))) as d:
        d.check_tls_and_bind()  # the keytab works while it holds the current key
    new = f'"Kb-{uuid.uuid4().hex}-8y"'.encode("utf-16-le")
    ldap_conn.modify_s(dn, [(ldap.MOD_REPLACE, "unicodePwd", [new])])  # a new key version
    with (
        LdapDirectory(kerberos_settings(sandbox, keytab=str(keytab), principal=principal(sam))) as d,
        pytest.raises(DirectoryAuthError) as err,
    ):
        d.check_tls_and_bind()
    assert "wrong key version" in str(err.value) and "export the keytab again" in str(err.value)


def test_principal_unknown(
    sandbox: Any, ldap_conn: Any, kerberos_user: tuple[str, str], tmp_path: Path
) -> None:
    sam, dn = kerberos_user
    keytab = tmp_path / "user.keytab"
    export_keytab(SandboxPaths(Path(sandbox.dir)), sam, keytab)
    ldap_conn.delete_s(dn)  # the keytab outlives its account
    with (
        LdapDirectory(kerberos_settings(sandbox, keytab=str(keytab), principal=principal(sam))) as d,
        pytest.raises(DirectoryError) as err,
    ):
        d.check_tls_and_bind()
    assert "the principal is not known to the KDC" in str(err.value) and "check target.principal" in str(
        err.value
    )


def test_a_principal_the_keytab_does_not_hold(sandbox: Any) -> None:
    other = principal("Administrator")
    with (
        LdapDirectory(kerberos_settings(sandbox, principal=other)) as d,
        pytest.raises(DirectoryAuthError) as err,
    ):
        d.check_tls_and_bind()
    assert "the keytab holds no key for" in str(err.value) and "klist -k" in str(err.value)


_BIND = """
import sys
from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.directory.kerberos import KeytabTicket
s = DirectorySettings(urls=(sys.argv[1],), bind_dn="", bind_password="", base_dn=sys.argv[2], auth="kerberos",
                      keytab=sys.argv[3], principal=sys.argv[4])
try:
    with LdapDirectory(s) as d:
        d.check_tls_and_bind()
    print("bound")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_clock_skew(sandbox: Any, tmp_path: Path) -> None:
    # This host two hours ahead of the KDC (faketime), and MIT's own correction of the offset off
    # (kdc_timesync = 0: by default MIT learns the KDC's time from the skew error and retries).
    conf = tmp_path / "krb5.conf"
    conf.write_text(
        Path(sandbox.krb5_conf).read_text().replace("[libdefaults]", "[libdefaults]\n    kdc_timesync = 0")
    )
    argv = [sandbox.kerberos_url, sandbox.base_dn, str(sandbox.service_keytab), sandbox.service_principal]
    env = {**os.environ, "KRB5_CONFIG": str(conf)}
    ran = subprocess.run(
        ["faketime", "-f", "+2h", sys.executable, "-c", _BIND, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ran.stdout.startswith("DirectoryAuthError"), ran.stdout + ran.stderr
    assert "the clocks of this host and the KDC differ" in ran.stdout and "synchronise" in ran.stdout
    # The same, on time: bound.
    ok = subprocess.run(
        [sys.executable, "-c", _BIND, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ok.stdout.strip() == "bound", ok.stdout + ok.stderr


def test_sandbox_up_kerberos_writes_a_ready_config_that_binds_with_the_keytab(sandbox: Any) -> None:
    info = sandbox_up(Path(sandbox.dir), users=sandbox.users, kerberos=True)
    assert info.kerberos_config is not None and info.service_keytab == sandbox.service_keytab
    config = Path(info.kerberos_config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert 'auth = "kerberos"' in text and f'keytab = "{info.service_keytab}"' in text
    assert "password" not in text.lower()
    check = subprocess.run(
        [sys.executable, "-m", "writeback", "--config", str(config), "config", "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "KRB5_CONFIG": str(info.krb5_conf)},
        timeout=300,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Kerberos bind OK as svc-writeback@CORP.EXAMPLE.TEST" in check.stdout
    assert "kerberos-sealed (SSF 256)" in check.stdout
    assert "Global Catalog ldap://localhost:3268: reachable" in check.stdout


def test_without_a_keytab_the_hosts_renewed_credential_cache_is_used(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "host.ccache"
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{cache}")
    host_only = kerberos_settings(sandbox, keytab=None)
    with LdapDirectory(host_only) as d, pytest.raises(DirectoryAuthError) as err:
        d.check_tls_and_bind()  # nothing in the cache yet
    assert f"FILE:{cache}" in str(err.value) and "renew it on the host" in str(err.value)
    # What k5start or sssd would do on the host: a ticket from the keytab into that cache.
    subprocess.run(
        ["kinit", "-k", "-t", str(sandbox.service_keytab), "-c", f"FILE:{cache}", sandbox.service_principal],
        check=True,
        capture_output=True,
    )
    with LdapDirectory(host_only) as d:
        d.check_tls_and_bind()
        assert d.protection == "kerberos-sealed (SSF 256)"
    assert cache.exists(), "the host's cache is the host's: writeback leaves it alone"
    assert os.environ["KRB5CCNAME"] == f"FILE:{cache}"


def test_the_ticket_is_renewed_from_the_keytab_and_the_connection_bound_again(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tickets of 330 s (asked for in krb5.conf; the DC refuses a ticket with less than its 5 minutes of clock skew
    # left), renewed 325 s before their end: the bind is redone after 5 s.
    conf = tmp_path / "krb5.conf"
    conf.write_text(
        Path(sandbox.krb5_conf)
        .read_text()
        .replace("[libdefaults]", "[libdefaults]\n    ticket_lifetime = 330s")
    )
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    settings = kerberos_settings(sandbox)
    ticket = KeytabTicket(sandbox.service_principal, str(sandbox.service_keytab), margin=325)
    with LdapDirectory(settings, ticket=ticket) as d:
        assert d.existing_dns([sandbox.base_dn]) == {sandbox.base_dn}
        first = ticket.ensure()
        assert 0 < first - time.time() <= 331
        time.sleep(6)
        assert d.existing_dns([sandbox.base_dn]) == {sandbox.base_dn}  # rebinds, with a new ticket
        assert d.stats["bind"] == 2
        assert ticket.ensure() > first + 4
        assert d.protection == "kerberos-sealed (SSF 256)"


def test_config_check_says_a_kerberos_bind_inside_tls_depends_on_channel_binding(
    sandbox: Any, tmp_path: Path
) -> None:
    info = sandbox_up(Path(sandbox.dir), users=sandbox.users, kerberos=True)
    config = tmp_path / "writeback.toml"
    text = Path(str(info.kerberos_config)).read_text()
    config.write_text(
        text.replace(f'ldap_urls = ["{info.kerberos_url}"]', 'ldap_urls = ["ldaps://localhost:636"]')
    )
    check = subprocess.run(
        [sys.executable, "-m", "writeback", "--config", str(config), "config", "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "KRB5_CONFIG": str(info.krb5_conf)},
        timeout=300,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "connection tls" in check.stdout
    assert "LdapEnforceChannelBinding = 2 refuses it. ldap:// (port 389" in check.stdout
