"""The sandbox's Kerberos files, as text: the Kerberos config loads as writeback's own loader reads it and holds
no password; the private krb5.conf never consults DNS; turning the KDC on in an older smb.conf is idempotent."""

from __future__ import annotations

import tomllib
from pathlib import Path

from writeback.config import parse_settings
from writeback.testbed.sandbox import configfile, samba
from writeback.testbed.sandbox.info import SandboxInfo
from writeback.testbed.sandbox.kerberos import KERBEROS_URL, SERVER_SERVICES, STRONG_AUTH, krb5_conf_text
from writeback.testbed.sandbox.layout import REALM, SandboxPaths


def info(tmp_path: Path) -> SandboxInfo:
    return SandboxInfo(
        dir=tmp_path, ldap_url="ldaps://127.0.0.1:636", gc_url="ldaps://127.0.0.1:3269",
        starttls_url="ldap://127.0.0.1:389", base_dn="DC=corp,DC=example,DC=test", bind_dn="CN=Administrator",
        bind_password="x", ca_file=tmp_path / "ca.pem", users_ou="OU=Staff,DC=corp,DC=example,DC=test",
        groups_ou="OU=Writeback,DC=corp,DC=example,DC=test", onprem_groups_ou="OU=Groups,DC=corp,DC=example,DC=test",
        domain="corp.example.test", users=0, tenant_id="t", client_id="c", client_secret="s",
        config=tmp_path / "writeback.toml", tenant_file=tmp_path / "tenant.yaml", samba_pid=None,
        service_bind_dn="CN=svc-writeback,CN=Users,DC=corp,DC=example,DC=test",
        service_keytab=tmp_path / "secrets" / "svc-writeback.keytab",
        service_principal=f"svc-writeback@{REALM}", krb5_conf=tmp_path / "krb5.conf", kerberos_url=KERBEROS_URL,
        graph_url="https://127.0.0.1:8443", authority="https://127.0.0.1:8443/t", graph_ca_file=tmp_path / "g.pem",
    )  # fmt: skip


def test_the_kerberos_config_binds_with_the_keytab_and_holds_no_password(tmp_path: Path) -> None:
    text = configfile.render(info(tmp_path), SandboxPaths(tmp_path), kerberos=True)
    assert "password" not in text.lower()
    settings = parse_settings(tomllib.loads(text), str(tmp_path / "writeback-kerberos.toml"))
    t = settings.target
    assert (t.auth, t.principal, t.keytab) == (
        "kerberos",
        f"svc-writeback@{REALM}",
        str(tmp_path / "secrets" / "svc-writeback.keytab"),
    )
    assert t.ldap_urls == ("ldap://localhost:389",) and t.gc_urls == ("ldap://localhost:3268",)
    # The plain config is unchanged: the password file, TLS.
    plain = tomllib.loads(configfile.render(info(tmp_path), SandboxPaths(tmp_path)))["target"]
    assert "auth" not in plain and plain["bind_password_file"].endswith("service_password")


def test_krb5_conf_names_the_kdc_and_asks_no_dns() -> None:
    text = krb5_conf_text()
    for line in (
        f"default_realm = {REALM}",
        "dns_lookup_kdc = false",
        "rdns = false",
        "dns_canonicalize_hostname = false",
        "kdc = 127.0.0.1:88",
        f"localhost = {REALM}",
    ):
        assert line in text


def test_the_kdc_is_turned_on_once_in_an_older_smb_conf(tmp_path: Path) -> None:
    paths = SandboxPaths(tmp_path)
    paths.smb_conf.parent.mkdir(parents=True)
    paths.smb_conf.write_text("[global]\n\tserver services = ldap, cldap\n\trealm = X\n")
    assert samba.ensure_kdc(paths) is True
    text = paths.smb_conf.read_text()
    assert samba.global_option(text, "server services") == SERVER_SERVICES
    assert samba.global_option(text, "ldap server require strong auth") == STRONG_AUTH
    assert samba.ensure_kdc(paths) is False
    assert paths.smb_conf.read_text() == text
