"""Windows Server's administrative limits on writes (adminLimitExceeded) and on reads (MaxQueryDuration per
page), against the connection double of tests/unit/ad_double.py."""

from __future__ import annotations

import logging

import ldap
import pytest

from tests.unit.ad_double import WindowsDC
from tests.unit.test_directory_ranges import URL, settings
from writeback.adapters.directory import LdapDirectory
from writeback.adapters.directory.connection import MAX_QUERY_DURATION, page_wait
from writeback.errors import DirectoryUnavailable, DirectoryWriteError


def member_modifies(dc: WindowsDC) -> list[int]:
    """Values per member modify the DC received (accepted or not)."""
    return [
        n for kind, (_dn, mods) in dc.log if kind == "modify" for _op, name, n in mods if name == "member"
    ]


def test_default_values_per_modify_is_5000():
    assert settings().max_values_per_modify == 5000


def test_add_members_halves_and_retries_on_admin_limit_and_keeps_the_smaller_size(caplog):
    dc = WindowsDC(max_values_per_modify=1200)
    group = dc.add_group("G")
    members = [f"CN=u{i},{dc.nc}" for i in range(6000)]
    with caplog.at_level(logging.WARNING), LdapDirectory(settings(), connect=dc.connect) as d:
        d.add_members(group, members)
        stats = d.stats
    assert dc.members_of(group) == members
    sent = member_modifies(dc)
    # 5000 refused -> 2500 refused -> 1250 refused -> 625 accepted; then the session stays at 625.
    assert sent[:4] == [5000, 2500, 1250, 625]
    assert max(sent[4:]) == 625 and sum(n for n in sent if n <= 1200) == 6000
    assert stats["values_written"] == 6000
    assert "adminLimitExceeded" in caplog.text and "target.max_values_per_modify = 625" in caplog.text


def test_remove_members_halves_on_admin_limit():
    members = [f"CN=u{i},DC=corp,DC=test" for i in range(3000)]
    dc = WindowsDC(max_values_per_modify=4000)
    group = dc.add_group("G", members)
    dc.max_values_per_modify = 1000
    with LdapDirectory(settings(max_values_per_modify=3000), connect=dc.connect) as d:
        d.remove_members(group, members[:2999])
    assert dc.members_of(group) == members[2999:]
    assert member_modifies(dc)[:3] == [2999, 1500, 750]


def test_create_group_sends_fewer_initial_members_on_admin_limit():
    dc = WindowsDC(max_values_per_modify=700)
    members = [f"CN=u{i},{dc.nc}" for i in range(3000)]
    dn = f"CN=New,{dc.nc}"
    with LdapDirectory(settings(max_values_per_modify=2000), connect=dc.connect) as d:
        d.create_group(dn, {"sAMAccountName": "New", "groupType": -2147483640}, members)
    assert dc.members_of(dn) == members
    adds = [dict(mods).get("member", 0) for kind, (_dn, mods) in dc.log if kind == "add"]
    assert adds == [2000, 1000, 500]
    assert max(member_modifies(dc)) <= 500


def test_admin_limit_on_a_single_value_is_reported_not_looped():
    dc = WindowsDC(max_values_per_modify=0)
    group = dc.add_group("G")
    with LdapDirectory(settings(), connect=dc.connect) as d, pytest.raises(DirectoryWriteError) as err:
        d.add_members(group, [f"CN=a,{dc.nc}", f"CN=b,{dc.nc}"])
    assert "ADMINLIMIT_EXCEEDED" in str(err.value) and group in str(err.value)
    assert member_modifies(dc) == [2, 1]


def test_other_write_errors_are_not_retried_as_admin_limits():
    dc = WindowsDC()
    with LdapDirectory(settings(), connect=dc.connect) as d, pytest.raises(DirectoryWriteError):
        d.add_members(f"CN=Missing,{dc.nc}", [f"CN=a,{dc.nc}", f"CN=b,{dc.nc}"])
    assert member_modifies(dc) == [2]


# -- reads: MaxQueryDuration is per page ---------------------------------------------------------------------


def test_page_wait_is_never_below_the_dcs_own_per_page_limit():
    assert page_wait(5.0) > MAX_QUERY_DURATION
    assert page_wait(600.0) == 600.0


def test_a_slow_page_within_maxqueryduration_does_not_abort_a_long_paged_read():
    """Each page costs 90 s on this busy DC: more than the 30 s client timeout, less than MaxQueryDuration.
    A read of 5,000 users (7.5 minutes in all) completes; the wait restarts with every page."""
    dc = WindowsDC(seconds_per_entry=0.09)
    for i in range(5000):
        dc.add_user(f"u{i}")
    with LdapDirectory(settings(timeout=30.0), connect=dc.connect) as d:
        users, _usn = d.read_user_properties(dc.nc, None)
        waits = d._domain.connection().waits
    assert len(users) == 5000
    page_waits = [t for flt, t in waits if "objectCategory" in flt]
    assert len(page_waits) == 5 and min(page_waits) >= MAX_QUERY_DURATION


def test_a_page_the_dc_stops_at_maxqueryduration_is_asked_again_smaller(caplog):
    dc = WindowsDC(seconds_per_entry=0.2)  # 1,000 entries = 200 s > 120 s: the DC answers timeLimitExceeded
    for i in range(1500):
        dc.add_user(f"u{i}")
    with caplog.at_level(logging.WARNING), LdapDirectory(settings(), connect=dc.connect) as d:
        users, _usn = d.read_user_properties(dc.nc, None)
    assert len(users) == 1500
    assert "retrying with pages of 500 entries" in caplog.text


def test_a_dc_too_slow_even_for_small_pages_fails_with_advice():
    dc = WindowsDC(seconds_per_entry=10.0)
    for i in range(100):
        dc.add_user(f"u{i}")
    with LdapDirectory(settings(), connect=dc.connect) as d, pytest.raises(DirectoryUnavailable) as err:
        d.read_user_properties(dc.nc, None)
    assert "MaxQueryDuration" in str(err.value) and URL in str(err.value)


def test_the_double_times_out_a_client_that_waits_less_than_a_page_takes():
    """The property the two tests above rely on: the double does raise TIMEOUT for a short client wait."""
    dc = WindowsDC(seconds_per_entry=0.09)
    for i in range(1000):
        dc.add_user(f"u{i}")
    conn = dc.connect(URL)
    msgid = conn.search_ext(dc.nc, ldap.SCOPE_SUBTREE, "(objectClass=user)", ["1.1"])
    with pytest.raises(ldap.TIMEOUT):
        conn.result3(msgid, timeout=30.0)
