"""`config check` refuses dangerous settings at load, naming file, key and reason (issue 23, finding 12): a
mapping that writes the anchor, members or identity attributes, SMTP credentials without TLS, and a PostgreSQL
URL whose hostaddr is not the host its certificate is verified against."""

from __future__ import annotations

from typing import Any

import pytest

from writeback.config import parse_settings, postgres_url_problem
from writeback.errors import ConfigError

BASE: dict[str, dict[str, Any]] = {
    "source": {"tenant_id": "t", "client_id": "c", "client_secret_env": "WB_SECRET"},
    "target": {
        "ldap_urls": ["ldaps://dc1.corp.test"],
        "bind_dn": "CN=svc,DC=corp,DC=test",
        "bind_password_file": "pw",
        "base_dn": "DC=corp,DC=test",
        "target_ou": "OU=Writeback,DC=corp,DC=test",
    },
}


def with_(section: str, **values: Any) -> dict[str, Any]:
    doc = {k: dict(v) for k, v in BASE.items()}
    doc.setdefault(section, {}).update(values)
    return doc


# -- [mapping.attributes] ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("msDS-ExternalDirectoryObjectId", "writeback's anchor"),
        ("adminDescription", "writeback's anchor"),
        ("msds-externaldirectoryobjectid", "writeback's anchor"),  # LDAP attribute names ignore case
        ("ADMINDESCRIPTION", "writeback's anchor"),
        ("member", "cloud group's members"),
        ("Member", "cloud group's members"),
        ("objectSid", "set by AD"),
        ("objectGUID", "set by AD"),
        ("sIDHistory", "logon token"),
        ("groupType", "mapping.group_scope"),
        ("sAMAccountName", "mapping.sam_account_name"),
        ("cn", "mapping.cn"),
        ("name", "mapping.cn"),
        ("distinguishedName", "mapping.cn"),
        ("displayName", "mapping.display_name"),
        ("description", "mapping.description"),
        ("nTSecurityDescriptor", "permissions"),
        ("adminCount", "protected"),
        ("isCriticalSystemObject", "protected"),
        ("objectClass", "set by AD"),
        ("memberOf", "cloud group's members"),
    ],
)
def test_a_mapping_of_a_reserved_attribute_is_refused(attribute: str, reason: str) -> None:
    doc = with_("mapping", attributes={attribute: '"x"'})
    with pytest.raises(ConfigError, match=rf"^f\.toml: mapping\.attributes\.{attribute}: .*{reason}") as info:
        parse_settings(doc, "f.toml")
    assert (info.value.file, info.value.key) == ("f.toml", f"mapping.attributes.{attribute}")


@pytest.mark.parametrize("attribute", ["info", "mail", "proxyAddresses", "extensionAttribute1", "managedBy"])
def test_ordinary_attributes_may_be_mapped(attribute: str) -> None:
    s = parse_settings(with_("mapping", attributes={attribute: "[displayName]"}), "f.toml")
    assert s.mapping.attributes == {attribute: "[displayName]"}


# -- [alerts] SMTP -------------------------------------------------------------------------------------------

SMTP = {"smtp_host": "mail.corp.test", "mail_from": "wb@corp.test", "mail_to": ["ops@corp.test"]}


@pytest.mark.parametrize(
    "credentials",
    [
        {"smtp_username": "wb"},
        {"smtp_username": "wb", "smtp_password_env": "WB_SMTP"},
        {"smtp_password_env": "WB_SMTP"},
    ],
)
def test_smtp_credentials_without_tls_are_refused(credentials: dict[str, str]) -> None:
    doc = with_("alerts", **SMTP, smtp_starttls=False, **credentials)
    with pytest.raises(ConfigError, match=r"^f\.toml: alerts\.smtp_starttls: .*clear text"):
        parse_settings(doc, "f.toml")


def test_smtp_credentials_with_starttls_and_an_open_relay_without_are_accepted() -> None:
    s = parse_settings(with_("alerts", **SMTP, smtp_username="wb", smtp_password_env="WB_SMTP"), "f.toml")
    assert s.alerts.smtp_starttls and s.alerts.smtp_username == "wb"
    relay = parse_settings(with_("alerts", **SMTP, smtp_starttls=False), "f.toml")
    assert relay.alerts.smtp_username is None and not relay.alerts.smtp_starttls


# -- [state] url: hostaddr -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://wb@db.corp.test/wb?hostaddr=10.0.0.9",  # sslmode defaults to verify-full
        "postgresql://wb@db.corp.test/wb?sslmode=verify-full&hostaddr=10.0.0.9",
        "postgresql://wb@10.0.0.5/wb?sslmode=verify-full&hostaddr=10.0.0.9",
        "postgresql://wb@/wb?host=db1,db2&hostaddr=10.0.0.1,10.0.0.2&sslmode=verify-full",
    ],
)
def test_a_hostaddr_other_than_the_host_is_refused_under_verify_full(url: str) -> None:
    problem = postgres_url_problem(url)
    assert problem is not None and "hostaddr" in problem
    assert "certificate" in problem
    assert "10.0.0.9" not in problem and "db.corp.test" not in problem  # the URL is never echoed
    with pytest.raises(ConfigError, match=r"^f\.toml: state\.url: .*hostaddr"):
        parse_settings(with_("state", url=url), "f.toml")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://wb@10.0.0.9/wb?sslmode=verify-full&hostaddr=10.0.0.9",
        "postgresql://wb@db.corp.test/wb?sslmode=verify-full",
        "postgresql://wb@localhost/wb?sslmode=disable&hostaddr=127.0.0.1",
    ],
)
def test_a_hostaddr_equal_to_the_host_or_none_is_accepted(url: str) -> None:
    assert postgres_url_problem(url) is None


def test_a_loopback_host_with_a_remote_hostaddr_is_not_local() -> None:
    """libpq connects to hostaddr: host=localhost must not exempt a remote server from verified TLS."""
    problem = postgres_url_problem("postgresql://wb@localhost/wb?sslmode=disable&hostaddr=10.0.0.9")
    assert problem is not None and "does not verify" in problem
