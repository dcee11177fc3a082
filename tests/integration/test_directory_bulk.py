"""Big groups against the real DC: one add plus chunked modifies, and ranged reads of ``member``.

The member users are a reusable fixture of the sandbox, like its seeded staff: creating them costs
minutes on this kind of machine (30-115 adds/s) and deleting them as much again, so they are created once per
sandbox in ``OU=wb-fixture-bulk-users`` (with asynchronous adds, many in flight) and kept. The groups the tests
write live in the module's own ``OU=t-bulk-…``, removed afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import ldap
import pytest
from tests.testbed.fixtures import directory_settings

from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.core.model import UNIVERSAL_SECURITY
from writeback.testbed.sandbox.ldapconn import connect

pytestmark = pytest.mark.samba

USERS = 3_000  # with chunks of CHUNK: one add plus two modifies, as with 12,000 and AD's 5,000
CHUNK = 1_200
IN_FLIGHT = 64
BULK_OU = "OU=wb-fixture-bulk-users"
COMPLETE = f"writeback test fixture: {USERS} member users, complete (kept between test sessions)"


def make_settings(sandbox: Any, **overrides: Any) -> DirectorySettings:
    return directory_settings(sandbox, **{"max_values_per_modify": CHUNK, **overrides})


def _add_ignoring_existing(conn: Any, items: list[tuple[str, list[tuple[str, list[bytes]]]]]) -> None:
    """Asynchronous adds, IN_FLIGHT at a time. Existing entries are fine: another session (or an interrupted
    earlier one) created them."""
    pending: deque[int] = deque()

    def settle() -> None:
        with contextlib.suppress(ldap.ALREADY_EXISTS):
            conn.result(pending.popleft())

    for dn, modlist in items:
        pending.append(conn.add_ext(dn, modlist))
        if len(pending) >= IN_FLIGHT:
            settle()
    while pending:
        settle()


@pytest.fixture(scope="module")
def bulk_users(sandbox: Any) -> list[str]:
    """USERS user DNs in the sandbox's reusable bulk OU (created on first use, see module docstring)."""
    conn = connect(sandbox.ldap_url, sandbox.ca_file, sandbox.bind_dn, sandbox.bind_password)
    try:
        ou = f"{BULK_OU},{sandbox.base_dn}"
        users = [f"CN=wb-bulk-{i:05d},{ou}" for i in range(USERS)]
        _add_ignoring_existing(conn, [(ou, [("objectClass", [b"top", b"organizationalUnit"])])])
        (_dn, attrs), *_ = conn.search_s(ou, ldap.SCOPE_BASE, "(objectClass=*)", ["description"])
        if attrs.get("description") != [COMPLETE.encode()]:
            user_class = [b"top", b"person", b"organizationalPerson", b"user"]
            _add_ignoring_existing(
                conn,
                [
                    (dn, [("objectClass", user_class), ("sAMAccountName", [f"wbbulk{i:05d}".encode()])])
                    for i, dn in enumerate(users)
                ],
            )
            conn.modify_s(ou, [(ldap.MOD_REPLACE, "description", [COMPLETE.encode()])])
        return users
    finally:
        conn.unbind_s()


@pytest.fixture(scope="module")
def bulk(sandbox: Any, bulk_users: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(OU for this module's groups, member user DNs). Groups are deleted one by one before their OU:
    Samba's tree delete of an OU holding a group with thousands of links runs into its time limit."""
    conn = connect(sandbox.ldap_url, sandbox.ca_file, sandbox.bind_dn, sandbox.bind_password)
    ou = f"OU=t-bulk-{uuid.uuid4().hex[:8]},{sandbox.base_dn}"
    conn.add_s(ou, [("objectClass", [b"top", b"organizationalUnit"])])
    try:
        yield ou, bulk_users
    finally:
        for dn, _attrs in conn.search_s(ou, ldap.SCOPE_SUBTREE, "(objectClass=group)", ["1.1"]):
            conn.delete_s(dn)
        conn.delete_s(ou)
        conn.unbind_s()


@pytest.fixture(scope="module")
def big_group(sandbox: Any, bulk: tuple[str, list[str]]) -> tuple[str, dict[str, int]]:
    """A group created with all USERS members; returns its DN and the stats of creating it."""
    ou, users = bulk
    dn = f"CN=Big,{ou}"
    with LdapDirectory(make_settings(sandbox)) as d:
        d.create_group(
            dn, {"sAMAccountName": f"big{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY}, users
        )
        return dn, d.stats


def test_create_with_3000_members_is_one_add_and_two_modifies(
    big_group: tuple[str, dict[str, int]], ldap_conn: Any
) -> None:
    dn, stats = big_group
    assert stats["add"] == 1
    assert stats["modify"] == 2
    assert stats["values_written"] == USERS + 4  # members, objectClass (2 values), sAMAccountName, groupType
    # Read back with a plain search: Samba returns all values at once.
    attrs = ldap_conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member"])[0][1]
    assert len(attrs["member"]) == USERS


def test_ranged_member_read(
    sandbox: Any, big_group: tuple[str, dict[str, int]], bulk: tuple[str, list[str]]
) -> None:
    dn, _ = big_group
    with LdapDirectory(make_settings(sandbox)) as d:
        members = d.read_members(dn, range_size=500)
        assert d.stats["search"] == USERS // 500  # 0-499, 500-999, …, 2500-*
    assert len(members) == USERS
    assert {m.lower() for m in members} == {u.lower() for u in bulk[1]}


def test_read_groups_returns_every_member(sandbox: Any, big_group: tuple[str, dict[str, int]]) -> None:
    dn, _ = big_group
    with LdapDirectory(make_settings(sandbox)) as d:
        (group,) = d.read_groups([dn], ("adminDescription",), ("description",))
    assert len(group.members) == USERS


def test_remove_and_readd_1000_members_in_batches(sandbox: Any, bulk: tuple[str, list[str]]) -> None:
    ou, users = bulk
    dn = f"CN=Churn,{ou}"
    with LdapDirectory(make_settings(sandbox, max_values_per_modify=400)) as d:
        d.create_group(
            dn,
            {"sAMAccountName": f"churn{uuid.uuid4().hex[:8]}", "groupType": UNIVERSAL_SECURITY},
            users[:2000],
        )
        assert (d.stats["add"], d.stats["modify"]) == (1, 4)
        d.remove_members(dn, users[:1000])
        assert d.stats["modify"] == 4 + 3  # 1000 values in chunks of 400
        d.add_members(dn, users[500:1000])
        assert d.stats["modify"] == 7 + 2
        assert len(d.read_members(dn)) == 1500
