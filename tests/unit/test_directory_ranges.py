"""The reader against a connection double answering as Windows Server does (see tests/unit/ad_double.py):
ranged retrieval of big groups, paging under MaxPageSize, and sizeLimitExceeded for unpaged searches."""

from __future__ import annotations

import ldap
import pytest

from tests.unit.ad_double import MAX_PAGE_SIZE, WindowsDC
from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.errors import DirectoryError

URL = "ldaps://dc1.corp.test"


def settings(**overrides: object) -> DirectorySettings:
    values: dict[str, object] = {
        "urls": (URL,),
        "bind_dn": "CN=svc,DC=corp,DC=test",
        "bind_password": "pw",
        "base_dn": "DC=corp,DC=test",
    }
    values.update(overrides)
    return DirectorySettings(**values)  # type: ignore[arg-type]


def big_group(dc: WindowsDC, n: int) -> tuple[str, list[str]]:
    members = [f"CN=user{i:06d},OU=Staff,{dc.nc}" for i in range(n)]
    return dc.add_group("Big", members), members


def searches(dc: WindowsDC) -> list[tuple[str, int, str, list[str] | None]]:
    return [args for kind, args in dc.log if kind == "search"]


def test_double_answers_plain_member_read_of_a_big_group_with_a_range_unasked():
    dc = WindowsDC()
    dn, _members = big_group(dc, 3200)
    conn = dc.connect(URL)
    msgid = conn.search_ext(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member"])
    _t, rdata, _m, _c = conn.result3(msgid)
    assert list(rdata[0][1]) == ["member;range=0-1499"] and len(rdata[0][1]["member;range=0-1499"]) == 1500
    msgid = conn.search_ext(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member;range=1500-*"])
    assert list(conn.result3(msgid)[1][0][1]) == ["member;range=1500-2999"]
    msgid = conn.search_ext(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member;range=3000-*"])
    assert list(conn.result3(msgid)[1][0][1]) == ["member;range=3000-*"]


@pytest.mark.parametrize("n", [1500, 1501, 3000, 4567])
def test_read_members_follows_ad_ranges_to_the_end(n):
    dc = WindowsDC()
    dn, members = big_group(dc, n)
    with LdapDirectory(settings(), connect=dc.connect) as d:
        assert d.read_members(dn) == members
    asked = [attrs[0] for _b, _s, _f, attrs in searches(dc) if attrs]
    expected_reads = 1 + (n - 1) // 1500
    assert asked[0] == "member" and len(asked) == expected_reads
    assert asked[1:] == [f"member;range={1500 * i}-*" for i in range(1, expected_reads)]


def test_read_members_with_explicit_ranges_larger_than_maxvalrange_still_completes():
    """A client asking for 5,000 per range gets 1,500 (MaxValRange) and must continue where AD stopped."""
    dc = WindowsDC()
    dn, members = big_group(dc, 7000)
    with LdapDirectory(settings(), connect=dc.connect) as d:
        assert d.read_members(dn, range_size=5000) == members


def test_managed_groups_paged_search_completes_ranged_members_of_each_group():
    dc = WindowsDC()
    members = [f"CN=u{i},{dc.nc}" for i in range(2000)]
    dc.add_group("Big", members)
    dn = f"CN=Big,{dc.nc}"
    dc.modify(dn, [(ldap.MOD_REPLACE, "adminDescription", [b"Group_0001"])])
    schema = f"CN=Schema,CN=Configuration,{dc.nc}"
    dc._put(schema, {"objectClass": [b"dMD"]})
    dc._put(
        f"CN=Admin-Description,{schema}",
        {"objectClass": [b"attributeSchema"], "lDAPDisplayName": [b"adminDescription"]},
    )
    with LdapDirectory(settings(), connect=dc.connect) as d:
        groups = d.read_managed_groups(("adminDescription",), ("description",))
    assert [g.dn for g in groups] == [dn]
    assert sorted(groups[0].members) == sorted(members)


def test_unpaged_search_over_maxpagesize_is_refused_like_windows():
    dc = WindowsDC()
    for i in range(MAX_PAGE_SIZE + 1):
        dc.add_user(f"u{i}")
    conn = dc.connect(URL)
    msgid = conn.search_ext(dc.nc, ldap.SCOPE_SUBTREE, "(objectClass=user)", ["1.1"])
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):
        conn.result3(msgid)


def test_paged_reads_get_every_entry_though_the_dc_caps_pages_at_maxpagesize():
    dc = WindowsDC()
    for i in range(2500):
        dc.add_user(f"u{i}", department="HR")
    with LdapDirectory(settings(page_size=5000), connect=dc.connect) as d:
        users, _usn = d.read_user_properties(dc.nc, None)
    assert len(users) == 2500
    user_pages = [s for s in searches(dc) if "objectCategory" in s[2]]
    assert len(user_pages) == 3  # 1000 + 1000 + 500: the DC ignored the 5,000 asked for


def test_a_failed_search_is_counted_by_result():
    """An unpaged search over MaxPageSize entries fails on Windows (sizeLimitExceeded): the operation counts
    as a search with an error (the console's `writeback_ldap_operations_total{kind="search",result="error"}`)."""
    dc = WindowsDC()
    for i in range(MAX_PAGE_SIZE + 1):
        dc.add_user(f"u{i}")
    with LdapDirectory(settings(), connect=dc.connect) as d:
        with pytest.raises(DirectoryError):
            d._domain.search(dc.nc, ldap.SCOPE_SUBTREE, "(objectClass=user)", ["cn"], paged=False)
        assert d.stats["search_errors"] == 1 and d.stats["search"] >= 1
