"""Rights checked before apply (issue 28, part 4): a group the service account may not write is reported with
the dsacls lines that grant the missing rights, and its changes are held; the rest of the plan applies.

The pure rule (writeback.core.rights) on desired states, then the engine with FakeDirectory, then the LDAP
adapter against the Windows double (allowedAttributesEffective as [MS-ADTS] 3.1.1.4.5.7 computes it)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tests.unit.builders import BASE, desire, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from tests.unit.test_directory_member_keys import windows_dc
from tests.unit.test_takeover import GLOBAL_SECURITY, LEGACY_OU, SID, account, original, soa
from writeback.adapters.directory import DirectorySettings, LdapDirectory
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Engine
from writeback.core.mapping import MSDS_ANCHOR
from writeback.core.model import CloudGroup, CloudUser, DirectoryAccount, DirectoryGroup, MemberRef
from writeback.core.planning import ChangeKind, Plan, Policy, compute_plan
from writeback.core.rights import HOLD_KIND, dsacls_lines, hold_unwritable, needed_attributes
from writeback.testbed.sandbox.serviceaccount import TAKEOVER_ATTRIBUTES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "least-privilege.md"
USER_DN = "CN=user1,OU=Staff"


def _plan(groups: list[CloudGroup], originals: list[DirectoryGroup], **kw: object) -> Plan:
    users = {
        "u1": CloudUser("u1", on_premises_sync_enabled=True, on_premises_security_identifier="S-1-5-21-9-1")
    }
    accounts = [DirectoryAccount(USER_DN, "guid-u1", "S-1-5-21-9-1")]
    by_sid = [account(o) for o in originals]
    state = desire(groups, users=users, accounts=accounts, by_sid=by_sid, originals=originals, **kw)  # type: ignore[arg-type]
    return hold_unwritable(compute_plan(state, Policy()), state)


def test_original_without_rights_is_held_with_the_dsacls_lines_and_the_rest_applies() -> None:
    held_group = soa(1, "Finance", members=[MemberRef("user", "u1")])
    other = soa(2, "Sales", sid="S-1-5-21-1-2-3-1106", members=[MemberRef("user", "u1")])
    locked = dataclasses.replace(original(f"CN=Finance,{LEGACY_OU}"), writable=frozenset({"description"}))
    open_ = dataclasses.replace(
        original(f"CN=Sales,{LEGACY_OU}", sid="S-1-5-21-1-2-3-1106"),
        object_guid="guid-sales",
        writable=frozenset({"member", "description", "displayName", MSDS_ANCHOR}),
    )
    plan = _plan([held_group, other], [locked, open_])

    assert {c.cloud_id for c in plan.held} == {held_group.id}
    assert {c.kind for c in plan.held} == {ChangeKind.UPDATE, ChangeKind.ADD_MEMBERS}
    assert {c.cloud_id for c in plan.changes} == {other.id}  # the rest of the plan is applied
    (hold,) = plan.holds
    assert hold.kind == HOLD_KIND and hold.groups == (held_group.id,) and hold.count == 2
    assert "member" in hold.message and locked.dn in hold.message
    (report,) = [r for r in plan.reports if r.cloud_id == held_group.id]
    assert report.error is not None and "\n" not in report.error  # one line: plans print a line per note
    for line in dsacls_lines(locked.dn, ["member", "displayName", MSDS_ANCHOR]):
        assert line in report.error
    assert dsacls_lines(locked.dn, ["description"])[0] not in report.error  # it may write that already
    assert held_group.id not in plan.fingerprints and other.id in plan.fingerprints  # not converged


def test_no_hold_when_the_rights_are_there_or_were_not_read() -> None:
    g = soa(1, "Finance", members=[MemberRef("user", "u1")])
    granted = frozenset(TAKEOVER_ATTRIBUTES)
    for writable in (granted, None):
        orig = dataclasses.replace(original(f"CN=Finance,{LEGACY_OU}"), writable=writable)
        plan = _plan([g], [orig])
        assert plan.held == () and plan.holds == ()
        assert {c.kind for c in plan.changes} == {ChangeKind.UPDATE, ChangeKind.ADD_MEMBERS}


def test_the_first_stamp_alone_needs_the_anchor_attribute() -> None:
    g = soa(1, "Finance")
    orig = dataclasses.replace(
        original(f"CN=Finance,{LEGACY_OU}"), writable=frozenset({"member", "displayName", "description"})
    )
    plan = _plan([g], [orig])
    (update,) = plan.held
    assert update.kind is ChangeKind.UPDATE and MSDS_ANCHOR in update.attributes
    assert plan.changes == () and MSDS_ANCHOR in (plan.holds[0].message)


def test_needed_attributes_per_change_kind() -> None:
    g = soa(1, "Finance", members=[MemberRef("user", "u1")])
    plan = _plan([g], [original(f"CN=Finance,{LEGACY_OU}")])
    by_kind = {c.kind: needed_attributes(c) for c in plan.changes}
    assert by_kind[ChangeKind.ADD_MEMBERS] == ("member",)
    assert set(by_kind[ChangeKind.UPDATE]) == {MSDS_ANCHOR, "displayName"}


def test_a_rename_without_write_cn_is_held_with_what_needs_its_new_dn() -> None:
    g = soa(1, "Finance")
    from writeback.config import MappingSettings

    orig = dataclasses.replace(
        original(f"CN=Finance,{LEGACY_OU}"), writable=frozenset({"member", "displayName", MSDS_ANCHOR})
    )
    config = settings(mapping=MappingSettings(keep_adopted_names=False))
    state = desire([g], by_sid=[account(orig)], originals=[orig], config=config)
    plan = hold_unwritable(compute_plan(state, Policy()), state)
    assert ChangeKind.MOVE in {c.kind for c in plan.held} and plan.changes == ()
    error = next(r.error for r in plan.reports if r.cloud_id == g.id)
    assert error is not None
    # cn is what allowedAttributesEffective can show; the grant names name too (a rename writes both).
    assert all(line in error for line in dsacls_lines(orig.dn, ["cn", "name"]))


def test_the_docs_show_the_lines_the_reports_give() -> None:
    """docs/least-privilege.md's takeover block is what dsacls_lines builds (and the sandbox delegates)."""
    text = DOCS.read_text()
    block = text.split("### Groups taken over outside the target OU", 1)[1].split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.startswith("dsacls")]
    assert tuple(lines) == dsacls_lines("%GRP%", TAKEOVER_ATTRIBUTES)
    assert re.search(r"allowedAttributesEffective", text)


# Through the engine with FakeDirectory: held, then written once granted ------------------------------------
def _takeover_engine() -> tuple[Engine, FakeDirectory, str, str]:
    dn = f"CN=Finance,OU=Legacy,{BASE}"
    user = CloudUser("u1", on_premises_sync_enabled=True, on_premises_security_identifier="S-1-5-21-9-1")
    member = DirectoryAccount(f"CN=user1,OU=Staff,{BASE}", "guid-u1", "S-1-5-21-9-1")
    directory = FakeDirectory(accounts=[member])
    directory.groups[dn.lower()] = {
        "dn": dn,
        "guid": "guid-orig",
        "objectSid": SID,
        "sAMAccountName": "FinanceLegacy",
        "groupType": str(GLOBAL_SECURITY),
        "member": set(),
    }
    directory.write_rights[dn.lower()] = {"description"}
    g = soa(1, "Finance", members=[MemberRef("user", "u1")])
    cloud = FakeCloud(users={"u1": user}, groups={g.id: g})
    engine = Engine(settings(), cloud, directory, SqliteStore(":memory:"))
    engine.sync()
    return engine, directory, dn, member.dn


def test_engine_holds_the_group_and_writes_it_once_granted() -> None:
    engine, directory, dn, member = _takeover_engine()
    plan = engine.plan()
    assert plan.changes == () and plan.held and plan.holds[0].kind == HOLD_KIND
    result = engine.apply(plan)
    assert result.ok and directory.ops.count(("modify", dn)) == 0  # nothing attempted
    assert directory.groups[dn.lower()]["member"] == set()

    directory.write_rights[dn.lower()] = set(TAKEOVER_ATTRIBUTES)  # the administrator ran the dsacls lines
    plan = engine.plan()
    assert plan.held == () and engine.apply(plan).ok
    entry = directory.groups[dn.lower()]
    assert entry["member"] == {member} and entry[MSDS_ANCHOR].startswith("Group_")
    assert engine.plan().changes == ()


def test_fake_directory_refuses_as_ad_does_without_the_check() -> None:
    """The double the engine test relies on: without the hold, AD's refusal is what apply met."""
    engine, _directory, _dn, _member = _takeover_engine()
    plan = engine.plan()
    unchecked = dataclasses.replace(plan, changes=plan.held, held=(), holds=())
    result = engine.apply(unchecked)
    assert not result.ok and any("INSUFFICIENT_ACCESS" in (r.error or "") for r in result.failed)


# The LDAP adapter against the Windows double ----------------------------------------------------------------
def test_adapter_reads_allowed_attributes_effective_with_the_group() -> None:
    dc = windows_dc()  # its schema defines adminDescription, the anchor read here
    locked = dc.add_group("Locked", parent=dc.nc)
    free = dc.add_group("Free", parent=dc.nc)
    dc.write_rights[locked.lower()] = frozenset({"description", "member"})
    directory = LdapDirectory(
        DirectorySettings(urls=("ldap://dc1",), bind_dn="CN=svc", bind_password="x", base_dn=dc.nc),
        connect=dc.connect,
    )
    groups = {
        g.dn: g
        for g in directory.read_groups([locked, free], ("adminDescription",), ("description", "displayName"))
    }
    assert groups[locked].writable == frozenset({"description", "member"})
    assert (
        groups[free].writable is not None
        and {"member", "displayName", "adminDescription", "cn"} <= groups[free].writable
    )
    searches = [a for op, a in dc.log if op == "search"]
    assert all(
        "allowedAttributesEffective" in (s[3] or []) for s in searches if s[2] == "(objectClass=group)"
    )
    # And the double refuses what it does not list, as AD does.
    from writeback.errors import DirectoryWriteError

    try:
        directory.modify_attributes(locked, {"displayName": "x"})
    except DirectoryWriteError as exc:
        assert exc.result is not None and exc.result.startswith("INSUFFICIENT_ACCESS")
    else:
        raise AssertionError("the double took a write the account has no right to")


def test_a_plan_held_for_rights_says_so_and_does_not_offer_an_allowance() -> None:
    from writeback.cli.report import render_plan
    from writeback.core.planning import Change, Hold

    held = Change(ChangeKind.ADD_MEMBERS, "g1", f"CN=G1,{LEGACY_OU}", "G1", members=("CN=u1",))
    rights = Hold(HOLD_KIND, 1, 0, "G1: the service account may not write member", groups=("g1",))
    text = render_plan(Plan(held=(held,), holds=(rights,)))
    assert "for rights the service account lacks in AD" in text and "dsacls" in text
    assert "safety threshold" not in text and "--allow-removals" not in text
    threshold = Hold("removals", 60, 30, "Member removal threshold exceeded")
    both = render_plan(Plan(held=(held,), holds=(rights, threshold)))
    assert (
        "by a safety threshold and for rights the service account lacks in AD" in both
        and "writeback allow" in both
    )
