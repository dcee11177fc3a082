"""python-ldap exceptions -> writeback's error tree, at the adapter's one boundary."""

from __future__ import annotations

import ldap
import pytest

from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.settings import DirectorySettings
from writeback.adapters.directory.translate import translate_ldap_error
from writeback.core.ports import Directory
from writeback.errors import (
    ConfigError,
    DirectoryAuthError,
    DirectoryError,
    DirectoryUnavailable,
    DirectoryWriteError,
)

URL = "ldaps://dc1.corp.example:636"


def test_certificate_failure_gets_the_ca_file_hint() -> None:
    exc = ldap.SERVER_DOWN(
        {"desc": "Can't contact LDAP server", "info": "error:0A000086:certificate verify failed"}
    )
    err = translate_ldap_error(exc, action="connect", url=URL)
    assert isinstance(err, DirectoryUnavailable)
    assert f"certificate verify failed for {URL}" in str(err)
    assert "set target.ca_file" in str(err)


def test_plain_server_down_has_no_tls_hint() -> None:
    err = translate_ldap_error(
        ldap.SERVER_DOWN({"desc": "Can't contact LDAP server"}), action="connect", url=URL
    )
    assert isinstance(err, DirectoryUnavailable)
    assert "ca_file" not in str(err)
    assert URL in str(err)


@pytest.mark.parametrize("cls", [ldap.TIMEOUT, ldap.CONNECT_ERROR, ldap.BUSY, ldap.UNAVAILABLE])
def test_transient_errors_are_unavailable(cls: type[ldap.LDAPError]) -> None:
    assert isinstance(translate_ldap_error(cls({"desc": "x"}), action="search"), DirectoryUnavailable)


def test_invalid_credentials_never_carry_the_password() -> None:
    secret = "S3cret!pw"
    exc = ldap.INVALID_CREDENTIALS({"desc": "Invalid credentials", "info": f"echo {secret} data 52e"})
    err = translate_ldap_error(exc, action="connect", url=URL, bind_dn="CN=svc,DC=x", secret=secret)
    assert isinstance(err, DirectoryAuthError)
    assert secret not in str(err)
    assert "CN=svc,DC=x" in str(err)


def test_write_refusal_carries_dn_and_result() -> None:
    exc = ldap.ALREADY_EXISTS({"desc": "Already exists", "info": "00002071: UpdErr: DSID-030503A8"})
    err = translate_ldap_error(exc, action="add", dn="CN=g,DC=x", write=True)
    assert isinstance(err, DirectoryWriteError)
    assert err.dn == "CN=g,DC=x"
    assert err.result is not None and err.result.startswith("ALREADY_EXISTS")
    assert "00002071" in err.result


def test_read_failure_is_a_plain_directory_error() -> None:
    err = translate_ldap_error(
        ldap.OPERATIONS_ERROR({"desc": "Operations error"}), action="search", dn="DC=x"
    )
    assert type(err) is DirectoryError
    assert "DC=x" in str(err)


def test_settings_hide_password_and_validate() -> None:
    s = DirectorySettings(urls=("ldaps://dc",), bind_dn="CN=a", bind_password="hunter2", base_dn="DC=x")
    assert "hunter2" not in repr(s)
    assert DirectorySettings("ldaps://dc", "CN=a", "p", "DC=x").urls == ("ldaps://dc",)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="urls"):
        DirectorySettings(urls=("https://dc",), bind_dn="CN=a", bind_password="p", base_dn="DC=x")
    with pytest.raises(ConfigError, match="page_size"):
        DirectorySettings(urls=("ldap://dc",), bind_dn="CN=a", bind_password="p", base_dn="DC=x", page_size=0)


def test_ldap_directory_implements_the_port_and_connects_lazily() -> None:
    settings = DirectorySettings(
        urls=("ldaps://192.0.2.1",), bind_dn="CN=a", bind_password="p", base_dn="DC=x"
    )
    directory: Directory = LdapDirectory(settings)  # mypy checks the structural match with ports.Directory
    assert isinstance(directory, LdapDirectory)
    assert directory.stats["bind"] == 0  # nothing contacted yet (192.0.2.1 is TEST-NET-1)
    directory.close()
