"""[target] auth = "kerberos": keytab and principal, no password, and the refusals that keep a config honest."""

from __future__ import annotations

from typing import Any

import pytest

from writeback.config import parse_settings
from writeback.errors import ConfigError

SOURCE = {"tenant_id": "t", "client_id": "c", "client_secret_env": "WB_SECRET"}
TARGET = {
    "ldap_urls": ["ldap://dc1.corp.example.com"],
    "base_dn": "DC=corp,DC=example,DC=com",
    "target_ou": "OU=Writeback,DC=corp,DC=example,DC=com",
}


def doc(**target: Any) -> dict[str, Any]:
    return {"source": SOURCE, "target": {**TARGET, **target}}


def test_kerberos_with_a_keytab_needs_no_password_and_no_bind_dn() -> None:
    s = parse_settings(
        doc(auth="kerberos", keytab="svc.keytab", principal="svc-writeback@CORP.EXAMPLE.COM"),
        "/etc/writeback/writeback.toml",
    )
    assert s.target.auth == "kerberos"
    assert s.target.keytab == "/etc/writeback/svc.keytab"  # relative to the config file, like every path
    assert s.target.principal == "svc-writeback@CORP.EXAMPLE.COM"
    assert s.target.bind_dn == ""
    assert s.target.bind_password.env is None and s.target.bind_password.file is None


def test_a_gmsa_principal_and_the_hosts_credential_cache_are_accepted() -> None:
    s = parse_settings(doc(auth="kerberos", principal="gmsa-writeback$@CORP.EXAMPLE.COM"), "f.toml")
    assert s.target.keytab is None and s.target.principal == "gmsa-writeback$@CORP.EXAMPLE.COM"
    assert parse_settings(doc(auth="kerberos"), "f.toml").target.principal is None


def test_simple_stays_the_default_and_still_needs_its_password() -> None:
    s = parse_settings(doc(bind_dn="CN=svc", bind_password_file="pw"), "f.toml")
    assert s.target.auth == "simple"
    with pytest.raises(ConfigError, match="bind_password_env: is required"):
        parse_settings(doc(bind_dn="CN=svc"), "f.toml")


@pytest.mark.parametrize(
    ("target", "key", "reason"),
    [
        ({"auth": "ntlm"}, "target.auth", 'must be one of simple, kerberos; got "ntlm"'),
        (
            {"auth": "kerberos", "keytab": "k", "principal": "p@R", "bind_password_file": "pw"},
            "target.bind_password_file",
            "no AD password is kept",
        ),
        ({"auth": "kerberos", "keytab": "k"}, "target.principal", "is required with keytab"),
        (
            {"auth": "kerberos", "principal": "svc writeback"},
            "target.principal",
            "is not a Kerberos principal",
        ),
        (
            {"bind_dn": "CN=svc", "bind_password_file": "pw", "keytab": "k"},
            "target.keytab",
            'only with auth = "kerberos"',
        ),
        (
            {"auth": "kerberos", "principal": "p@R", "insecure_plain_ldap": True},
            "target.insecure_plain_ldap",
            "always signed and sealed",
        ),
    ],
)
def test_refusals(target: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(doc(**target), "f.toml")
    assert err.value.key == key and reason.replace('"', "'") in str(err.value).replace('"', "'")
