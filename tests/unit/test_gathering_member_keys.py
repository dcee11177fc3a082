"""A partial plan takes the accounts of its groups' members from the group read (the extended DN control) and
searches AD only for the rest; what it decides is what searching every account decides.

``FakeDirectory.resolve_calls`` records which keys were searched for; the "old path" is the same directory
whose group read brings no accounts (every key is then searched, as before this change).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.unit.builders import BASE, OU, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.app.gathering import Schema, gather
from writeback.core.desired import DirectoryFacts, Questions
from writeback.core.mapping import ADMIN_DESCRIPTION, MSDS_ANCHOR
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, MemberRef
from writeback.core.planning import ChangeKind
from writeback.core.ports import ResolvedAccounts

SCHEMA = Schema(write=(MSDS_ANCHOR,), read=(MSDS_ANCHOR, ADMIN_DESCRIPTION))
GROUP_DN = f"CN=Big,{OU}"
KEY = "11111111-0000-0000-0000-000000000001"
FSP_SID = "S-1-5-21-7-7-7-4242"
FSP_DN = f"CN={FSP_SID},CN=ForeignSecurityPrincipals,{BASE}"


def sid(i: int) -> str:
    return f"S-1-5-21-9-{i}"


def guid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def account(i: int, parent: str = f"OU=Staff,{BASE}") -> DirectoryAccount:
    return DirectoryAccount(f"CN=user{i},{parent}", guid(i), sid(i))


def keyless(directory: FakeDirectory) -> FakeDirectory:
    """The old path: the same directory, its group read bringing no member accounts."""

    def read(dns: Any, anchors: Any, mapped: Any) -> tuple[list[Any], ResolvedAccounts]:
        return directory.read_groups(dns, anchors, mapped), ResolvedAccounts()

    directory.read_groups_with_accounts = read  # type: ignore[method-assign]
    return directory


def directory_with_group(members: list[str], accounts: list[DirectoryAccount], **kw: Any) -> FakeDirectory:
    d = FakeDirectory(accounts=accounts, **kw)
    d.groups[GROUP_DN.lower()] = {
        "dn": GROUP_DN,
        "guid": "99999999-0000-0000-0000-000000000009",
        "groupType": -2147483640,
        MSDS_ANCHOR: f"Group_{KEY}",
        "member": set(members),
    }
    return d


def questions(keys: list[tuple[str | None, str | None]], match_order: tuple[str, ...]) -> Questions:
    return Questions(
        accounts=frozenset(keys),
        match_order=match_order,
        every_managed_group=False,
        prefixes=("Group_",),
        groups={KEY: (GROUP_DN,)},
        remembered=frozenset({KEY}),
        sam_candidates={},
        sam_mapped=frozenset(),
        dns={KEY: GROUP_DN},
        base_dn=BASE,
    )


def facts_both_ways(
    q: Questions, make: Any
) -> tuple[DirectoryFacts, FakeDirectory, DirectoryFacts, FakeDirectory]:
    new, old = make(), keyless(make())
    got = gather(q, new, SCHEMA, ("description",), lambda _m: None)
    expected = gather(q, old, SCHEMA, ("description",), lambda _m: None)
    return got, new, expected, old


def resolved(facts: DirectoryFacts) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {k: a.dn for k, a in facts.accounts.by_sid.items()},
        {k: a.dn for k, a in facts.accounts.by_guid.items()},
    )


@pytest.mark.parametrize("order", [("sid", "immutable_id"), ("immutable_id", "sid")])
def test_member_accounts_count_as_found_and_the_rest_is_searched_in_match_order(
    order: tuple[str, ...],
) -> None:
    # Accounts 0-3 are members of the group; 4 and 5 exist in AD but are not members; 6 exists nowhere.
    accounts = [account(i) for i in range(6)]
    keys: list[tuple[str | None, str | None]] = [
        (sid(0), guid(0)),  # both keys of a member
        (sid(1), None),  # a member by SID only
        (None, guid(2)),  # a member by GUID only
        (sid(4), guid(3)),  # SID of a non-member, GUID of a member: the match order decides
        (sid(6), guid(3)),  # SID found nowhere, GUID of a member
        (sid(5), guid(5)),  # not a member: searched
        (sid(6), guid(6)),  # nowhere
    ]
    members = [a.dn for a in accounts[:4]]
    q = questions(keys, order)
    got, new, expected, old = facts_both_ways(q, lambda: directory_with_group(members, accounts))

    assert got == expected  # the same facts, so the same plan
    assert resolved(got) == resolved(expected)
    if order[0] == "sid":
        assert resolved(got)[0][sid(4)] == accounts[4].dn  # SID first: the non-member found by search
        assert new.resolve_calls == [
            (frozenset({sid(4), sid(5), sid(6)}), frozenset()),
            (frozenset(), frozenset({guid(6)})),  # guid(3) of the SID-less-found user: from the members
        ]
    else:
        assert resolved(got)[1][guid(3)] == accounts[3].dn  # GUID first: the member
        assert new.resolve_calls == [
            (frozenset(), frozenset({guid(5), guid(6)})),
            (frozenset({sid(6)}), frozenset()),  # sid(1) is a member's: not searched
        ]
    # The old path searched every key of the first kind.
    every_first = (
        (frozenset({sid(0), sid(1), sid(4), sid(5), sid(6)}), frozenset())
        if order[0] == "sid"
        else (frozenset(), frozenset({guid(0), guid(2), guid(3), guid(5), guid(6)}))
    )
    assert old.resolve_calls[0] == every_first
    assert new.keyed_reads == [GROUP_DN] and ("search", GROUP_DN) in new.ops


def test_a_foreign_security_principal_member_is_not_used() -> None:
    fsp = DirectoryAccount(FSP_DN, guid(77), FSP_SID, "foreignSecurityPrincipal")
    accounts = [account(1), fsp]
    q = questions([(FSP_SID, None), (sid(1), guid(1))], ("sid", "immutable_id"))
    got, new, expected, _old = facts_both_ways(
        q, lambda: directory_with_group([FSP_DN, account(1).dn], accounts)
    )
    assert got == expected
    assert FSP_SID not in got.accounts.by_sid and sid(1) in got.accounts.by_sid
    assert new.resolve_calls == [(frozenset({FSP_SID}), frozenset())], "searched, not taken from the members"


@pytest.mark.parametrize("gc", [False, True])
@pytest.mark.parametrize("domain", ["DC=child,DC=corp,DC=test", "DC=other,DC=test"])
def test_a_member_outside_the_domain_counts_only_with_a_global_catalog(gc: bool, domain: str) -> None:
    other = account(3, parent=f"OU=Staff,{domain}")
    q = questions([(sid(3), None)], ("sid", "immutable_id"))
    children = ("DC=child,DC=corp,DC=test",)
    got, new, expected, _old = facts_both_ways(
        q, lambda: directory_with_group([other.dn], [other], global_catalog=gc, child_domains=children)
    )
    assert got == expected
    assert (sid(3) in got.accounts.by_sid) is gc
    assert new.resolve_calls == ([] if gc else [(frozenset({sid(3)}), frozenset())])


def test_a_group_not_where_it_was_last_written_falls_back_to_searching_every_member() -> None:
    accounts = [account(i) for i in range(3)]
    moved = f"CN=Big,OU=Elsewhere,{BASE}"
    q = dataclasses.replace(questions([(sid(i), None) for i in range(3)], ("sid",)), groups={KEY: (moved,)})
    got, new, expected, _old = facts_both_ways(
        q, lambda: directory_with_group([a.dn for a in accounts], accounts)
    )
    assert got == expected and [g.dn for g in got.managed] == [GROUP_DN]
    assert ("search", "*") in new.ops, "every managed group read"
    assert new.resolve_calls == [(frozenset({sid(0), sid(1), sid(2)}), frozenset())]


def test_a_full_plan_resolves_first_and_reads_every_managed_group_without_member_keys() -> None:
    accounts = [account(i) for i in range(2)]
    q = dataclasses.replace(questions([(sid(0), None), (sid(1), None)], ("sid",)), every_managed_group=True)
    d = directory_with_group([accounts[0].dn], accounts)
    gather(q, d, SCHEMA, ("description",), lambda _m: None)
    assert d.keyed_reads == [] and ("search", "*") in d.ops
    assert d.resolve_calls == [(frozenset({sid(0), sid(1)}), frozenset())]


# -- the engine: one member added to a big group --------------------------------------------------------------
N = 2500  # more keys than the LDAP adapter's FULL_SCAN_TERMS (2,000): the old path read every AD user


def gid(i: int) -> str:
    return f"{i:08d}-0000-0000-0000-{i:012d}"


def cloud_group(members: range) -> CloudGroup:
    return CloudGroup(
        gid(1), display_name="Big", members=frozenset(MemberRef("user", f"u{i}") for i in members)
    )


def test_one_member_added_to_a_big_group_searches_only_that_member_and_plans_as_before() -> None:
    users = {
        f"u{i}": CloudUser(f"u{i}", on_premises_sync_enabled=True, on_premises_security_identifier=sid(i))
        for i in range(N + 1)
    }
    cloud = FakeCloud(users=users, groups={gid(1): cloud_group(range(N))}, incremental=True)
    directory = FakeDirectory(accounts=[account(i) for i in range(N + 1)])
    store = SqliteStore(":memory:")
    engine = Engine(settings(), cloud, directory, store)
    engine.sync()
    assert engine.apply(engine.plan()).ok

    cloud.groups = {gid(1): cloud_group(range(N + 1))}
    engine.sync()
    directory.resolve_calls.clear()
    quick = engine.plan(only={gid(1)})
    assert directory.resolve_calls == [(frozenset({sid(N)}), frozenset())], "only the new member searched"
    assert len(directory.keyed_reads) == 1
    assert [(c.kind, c.members) for c in quick.changes] == [(ChangeKind.ADD_MEMBERS, (account(N).dn,))]

    keyless(directory)
    directory.resolve_calls.clear()
    before = engine.plan(only={gid(1)})
    assert directory.resolve_calls == [(frozenset(sid(i) for i in range(N + 1)), frozenset())]
    assert before == quick
