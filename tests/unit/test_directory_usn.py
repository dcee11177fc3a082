"""USN watermarks are per DC (invocationId), and deleted AD users leave the cache at the next incremental read.
Against the Windows-shaped double (tests/unit/ad_double.py) and the real SQLite store."""

from __future__ import annotations

import logging

import pytest

from tests.unit.ad_double import WindowsDC, connect_to
from tests.unit.fakes import FakeCloud
from tests.unit.test_directory_ranges import URL, settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.config import parse_settings
from writeback.core.ports import UsnWatermark
from writeback.errors import DirectoryError

URL2 = "ldaps://dc2.corp.test"
STAFF = "OU=Staff,DC=corp,DC=test"


def dc_with_staff() -> WindowsDC:
    dc = WindowsDC()
    dc._put(STAFF, {"objectClass": [b"organizationalUnit"]})
    return dc


def test_watermark_is_the_dcs_invocation_id_and_the_usn_before_the_read():
    dc = dc_with_staff()
    dc.add_user("a", STAFF)
    usn_before = dc.usn
    with LdapDirectory(settings(), connect=dc.connect) as d:
        changes = d.read_user_changes(STAFF, None)
    assert changes.full and changes.watermark == UsnWatermark(dc.invocation_id, usn_before)
    assert [u["onPremisesSamAccountName"] for u in changes.users] == ["a"]


def test_incremental_read_returns_changed_users_and_deleted_user_ids():
    dc = dc_with_staff()
    a = dc.add_user("a", STAFF, department="HR")
    b = dc.add_user("b", STAFF, department="HR")
    dc.add_user("c", STAFF, department="HR")
    with LdapDirectory(settings(), connect=dc.connect) as d:
        first = d.read_user_changes(STAFF, None)
        b_guid = dc.guid_of(b)
        dc.modify(a, [(2, "department", [b"IT"])])  # MOD_REPLACE
        dc.delete(b)
        second = d.read_user_changes(STAFF, first.watermark)
    assert not second.full
    assert [u["department"] for u in second.users] == ["IT"]
    assert second.removed == [b_guid]
    assert second.watermark.usn > first.watermark.usn


def test_deleted_users_are_invisible_without_the_show_deleted_control():
    """The property the deleted-user read depends on: a plain search does not see tombstones."""
    dc = dc_with_staff()
    b = dc.add_user("b", STAFF)
    dc.delete(b)
    conn = dc.connect(URL)
    msgid = conn.search_ext(
        f"<WKGUID=18E2EA80684F11D2B9AA00C04F79F805,{dc.nc}>", 1, "(isDeleted=TRUE)", ["1.1"]
    )
    assert conn.result3(msgid)[1] == []


def test_a_watermark_of_another_dc_means_a_full_read(caplog):
    dc1 = dc_with_staff()
    dc1.add_user("a", STAFF)
    dc2 = dc1.replica("0c3a7d8e-0000-4000-8000-000000000002", usn=50)  # replicas number changes independently
    dc2.add_user("b", STAFF)
    with LdapDirectory(settings(), connect=dc1.connect) as d:
        on_dc1 = d.read_user_changes(STAFF, None)
    dc1.down = True
    connect = connect_to({URL: dc1, URL2: dc2})
    with caplog.at_level(logging.INFO), LdapDirectory(settings(urls=(URL, URL2)), connect=connect) as d:
        on_dc2 = d.read_user_changes(STAFF, on_dc1.watermark)
    assert on_dc2.full and on_dc2.watermark.dc == dc2.invocation_id
    assert sorted(u["onPremisesSamAccountName"] for u in on_dc2.users) == ["a", "b"]
    assert "not comparable" in caplog.text
    # With the USN alone, "b" (uSNChanged 51 on DC2, below DC1's watermark) would have been missed.
    assert on_dc2.watermark.usn < on_dc1.watermark.usn


def test_missing_dc_identity_is_a_clear_error():
    dc = dc_with_staff()
    del dc.entries[dc.ntds_dn.lower()]
    with (
        LdapDirectory(settings(), connect=dc.connect) as d,
        pytest.raises(DirectoryError, match="invocationId"),
    ):
        d.read_user_changes(STAFF, None)


DOC = {
    "target": {
        "ldap_urls": [URL],
        "bind_dn": "x",
        "bind_password_env": "Y",
        "base_dn": "DC=corp,DC=test",
        "target_ou": "OU=Writeback,DC=corp,DC=test",
    },
    "scope": {"mode": "none"},
    "dynamic_groups": [{"id": "hr", "name": "HR", "rule": 'user.department -eq "HR"'}],
}


def test_sync_ad_users_keeps_the_cache_right_across_deletes_and_dc_changes(tmp_path):
    dc = dc_with_staff()
    dc.add_user("a", STAFF, department="HR")
    b = dc.add_user("b", STAFF, department="HR")
    store = SqliteStore(tmp_path / "state.db")
    s = parse_settings(DOC, "w.toml")
    with LdapDirectory(settings(), connect=dc.connect) as d:
        engine = Engine(s, FakeCloud(), d, store)
        assert engine.sync_ad_users() == 2
        assert store.ad_users_watermark() == (dc.invocation_id, dc.usn)
        assert engine.sync_ad_users() == 0  # nothing changed: nothing to plan
        dc.delete(b)
        assert engine.sync_ad_users() == 1  # one deletion: the service plans at this poll
        assert [u["onPremisesSamAccountName"] for u in store.ad_users()] == ["a"]
    # A cache written before the DC was recorded is read in full (its USN is of an unknown DC).
    store.set_meta("ad_users_dc", None)
    assert store.ad_users_watermark() is None


def test_no_access_to_deleted_objects_is_a_warning_with_the_fix_not_a_failed_poll(caplog):
    dc = dc_with_staff()
    b = dc.add_user("b", STAFF)
    dc.deleted_objects_visible = False
    with caplog.at_level(logging.WARNING), LdapDirectory(settings(), connect=dc.connect) as d:
        first = d.read_user_changes(STAFF, None)
        dc.delete(b)
        second = d.read_user_changes(STAFF, first.watermark)
        d.read_user_changes(STAFF, second.watermark)
    assert second.removed == []
    assert caplog.text.count("cannot read the Deleted Objects container") == 1
    assert "/takeownership" in caplog.text and ":LCRP" in caplog.text


def test_failover_in_the_middle_of_a_read_reads_again_in_full_from_the_new_dc(caplog):
    dc1 = dc_with_staff()
    dc1.add_user("a", STAFF)
    dc2 = dc1.replica("0c3a7d8e-0000-4000-8000-000000000003", usn=10)
    dc2.add_user("b", STAFF)
    connect = connect_to({URL: dc1, URL2: dc2})
    with caplog.at_level(logging.WARNING), LdapDirectory(settings(urls=(URL, URL2)), connect=connect) as d:
        first = d.read_user_changes(STAFF, None)
        dc1.searches_before_down = 2  # rootDSE and NTDS Settings answer; the user search finds DC1 gone
        second = d.read_user_changes(STAFF, first.watermark)
    assert first.watermark.dc == dc1.invocation_id
    assert second.full and second.watermark.dc == dc2.invocation_id
    assert sorted(u["onPremisesSamAccountName"] for u in second.users) == ["a", "b"]
    assert "while reading AD users; reading again" in caplog.text
