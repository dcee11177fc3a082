"""LdapDirectory.create_user ([users] provision = "cloud_members") against the connection double: the password
is made in the adapter, sent as unicodePwd (quoted, UTF-16LE) in the add itself, and only over TLS."""

from __future__ import annotations

import pytest

from tests.unit.ad_double import WindowsDC
from tests.unit.test_directory_ranges import settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.adapter import PASSWORD_LENGTH
from writeback.errors import DirectoryWriteError

ATTRS = {
    "sAMAccountName": "julia",
    "userPrincipalName": "julia@corp.test",
    "userAccountControl": "512",
    "adminDescription": "User_x",
}


def test_the_password_is_in_the_add_as_quoted_utf16le_and_nowhere_else():
    dc = WindowsDC()
    dn = f"CN=Julia,OU=Cloud Users,{dc.nc}"
    with LdapDirectory(settings(), connect=dc.connect) as d:
        assert d.create_user(dn, ATTRS) is None  # nothing comes back
    (stored,) = [attrs for written, attrs in dc.entries.values() if written == dn]
    (raw,) = stored["unicodepwd"]
    text = raw.decode("utf-16-le")
    assert text.startswith('"') and text.endswith('"') and len(text) == PASSWORD_LENGTH + 2
    assert stored["objectclass"] == [b"top", b"person", b"organizationalPerson", b"user"]
    assert stored["samaccountname"] == [b"julia"]
    # The log of operations (what a debug trace would show) counts values, never holds one.
    assert all(text[1:-1] not in repr(entry) for entry in dc.log)


def test_no_add_without_tls_and_no_password_passed_in():
    dc = WindowsDC()
    plain = settings(urls=("ldap://dc1.corp.test",), allow_insecure=True)
    with LdapDirectory(plain, connect=dc.connect) as d, pytest.raises(DirectoryWriteError) as err:
        d.create_user(f"CN=Julia,{dc.nc}", ATTRS)
    assert "MS-ADTS 3.1.1.3.1.5.1" in str(err.value) and err.value.permanent
    assert not any(kind == "add" for kind, _ in dc.log)
    with LdapDirectory(settings(), connect=dc.connect) as d, pytest.raises(ValueError):
        d.create_user(f"CN=Julia,{dc.nc}", {**ATTRS, "unicodePwd": "x"})
