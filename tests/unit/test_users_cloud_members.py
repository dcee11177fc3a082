"""[users] provision = "cloud_members" (issue 24): an AD account for each cloud-only member of an in-scope group,
through the one pipeline (intents, questions, gathering, desired state, plan, holds, apply, log), with the
in-memory fakes and SQLite. The fake directory makes each password with the adapter's generator and keeps it,
so every output can be searched for it."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest

from tests.unit.builders import BASE, settings
from tests.unit.fakes import FakeCloud, FakeDirectory
from writeback.adapters.directory.adapter import PASSWORD_LENGTH, new_password
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.engine import Allowances, Engine
from writeback.cli.report import render_plan
from writeback.config import Settings
from writeback.core.dn import normalize_dn
from writeback.core.mapping import user_cn, user_sam_candidates
from writeback.core.model import TARGET_USER, CloudGroup, CloudUser, MemberRef
from writeback.core.planning import ChangeKind, Plan

USERS_OU = f"OU=Cloud Users,{BASE}"
GROUP_ID = "00000000-0000-0000-0000-000000000001"
JULIA = "11111111-2222-3333-4444-555566667777"
JULIA_CN = "Julia Keller_555566667777"
JULIA_DN = f"CN={JULIA_CN},{USERS_OU}"


def cloud_user(uid: str = JULIA, upn: str = "julia.keller@contoso.example", **kw: Any) -> CloudUser:
    return CloudUser(
        uid,
        display_name=kw.pop("display_name", "Julia Keller"),
        user_principal_name=upn,
        account_enabled=kw.pop("account_enabled", True),
        attributes={
            "givenName": "Julia",
            "surname": "Keller",
            "department": "Treasury",
            **kw.pop("attrs", {}),
        },
        **kw,
    )


def members_on(*, safety: dict[str, Any] | None = None, **users: Any) -> Settings:
    tables: dict[str, Any] = {"safety": safety} if safety else {}
    return settings(users={"provision": "cloud_members", "target_ou": USERS_OU, **users}, **tables)


def build(
    users: list[CloudUser], *, config: Settings | None = None, directory: FakeDirectory | None = None
) -> tuple[Engine, FakeDirectory, FakeCloud, SqliteStore]:
    directory = directory or FakeDirectory()
    group = CloudGroup(
        GROUP_ID, display_name="SG-Treasury-Portal", members=frozenset(MemberRef("user", u.id) for u in users)
    )
    cloud = FakeCloud(users={u.id: u for u in users}, groups={GROUP_ID: group})
    store = SqliteStore(":memory:")
    engine = Engine(config or members_on(), cloud, directory, store)
    engine.sync()
    return engine, directory, cloud, store


def set_members(engine: Engine, cloud: FakeCloud, users: list[CloudUser]) -> None:
    g = cloud.groups[GROUP_ID]
    cloud.groups[GROUP_ID] = CloudGroup(
        GROUP_ID, display_name=g.display_name, members=frozenset(MemberRef("user", u.id) for u in users)
    )
    engine.sync()


def group_members(directory: FakeDirectory) -> set[str]:
    (entry,) = directory.groups.values()
    return {normalize_dn(m) for m in entry["member"]}


def test_names_follow_cloud_syncs_defaults():
    user = cloud_user(display_name="  Julia\x1b[8m Keller ")
    assert user_cn(user) == "Julia[8m Keller_555566667777"  # control characters removed, trimmed
    long = cloud_user(upn="averyveryverylongprefix@contoso.example")
    candidates = user_sam_candidates(long)
    assert candidates[0] == "averyveryverylo" and all(len(c) <= 20 for c in candidates)
    assert len(set(candidates)) == len(candidates)


def test_password_generator_is_long_and_has_every_class():
    for _ in range(50):
        pw = new_password()
        assert len(pw) == PASSWORD_LENGTH
        assert any(c in string.ascii_uppercase for c in pw) and any(c in string.ascii_lowercase for c in pw)
        assert any(c in string.digits for c in pw) and any(not c.isalnum() for c in pw)
    assert new_password() != new_password()


def test_creates_the_account_with_names_and_anchors_and_the_group_holds_it():
    engine, directory, _, _ = build([cloud_user()])
    plan = engine.plan()
    (create,) = [c for c in plan.changes if c.target == TARGET_USER]
    assert create.kind is ChangeKind.CREATE and create.dn == JULIA_DN
    attrs = create.attributes
    assert attrs["msDS-ExternalDirectoryObjectId"] == f"User_{JULIA}"
    assert attrs["adminDescription"] == f"User_{JULIA}"
    assert attrs["sAMAccountName"] == "julia.keller"
    assert attrs["userPrincipalName"] == "julia.keller@corp.test"
    assert attrs["userAccountControl"] == str(0x200)
    assert "julia.keller@corp.test" in render_plan(plan)  # the names are shown in the plan
    result = engine.apply(plan)
    assert all(r.ok for r in result.results), [r.error for r in result.results]
    account = directory.users[normalize_dn(JULIA_DN)]
    assert account["displayName"] == "Julia Keller" and account["department"] == "Treasury"
    assert group_members(directory) == {normalize_dn(JULIA_DN)}
    # The account was created before the group's member add that references it.
    adds = [dn for op, dn in directory.ops if op in ("add", "modify")]
    assert adds.index(JULIA_DN) < max(i for i, dn in enumerate(adds) if "OU=Writeback" in dn)
    assert not engine.plan().changes  # a rerun changes nothing


def test_users_off_leaves_the_cloud_only_member_skipped():
    engine, directory, _, _ = build([cloud_user()], config=settings())
    plan = engine.plan()
    assert not [c for c in plan.changes if c.target == TARGET_USER]
    assert any(s.member_id == JULIA for r in plan.reports for s in r.skipped)
    engine.apply(plan)
    assert not directory.users and not directory.passwords


def test_guests_only_with_guests_true_and_soft_deleted_never_created():
    guest = cloud_user(
        "22222222-0000-0000-0000-000000000002", "ext#EXT#@t.example", attrs={"userType": "Guest"}
    )
    gone = cloud_user("33333333-0000-0000-0000-000000000003", "gone@contoso.example", deleted=True)
    engine, _, _, _ = build([guest, gone])
    assert not [c for c in engine.plan().changes if c.target == TARGET_USER]
    engine, _, _, _ = build([guest, gone], config=members_on(guests=True))
    creates = [c for c in engine.plan().changes if c.target == TARGET_USER]
    assert [c.cloud_id for c in creates] == [guest.id]


def test_names_are_unique_against_ad_and_each_other():
    other = cloud_user("99999999-2222-3333-4444-000000000001", "julia.keller@fabrikam.example")
    taken = {
        "dn": f"CN=Julia K,OU=Staff,{BASE}",
        "guid": "g-old",
        "objectSid": "S-1-5-21-1-2-3-5000",
        "sAMAccountName": "julia.keller",
        "userPrincipalName": "julia.keller@corp.test",
    }
    engine, directory, _, _ = build(
        [cloud_user(), other], directory=FakeDirectory(users={normalize_dn(taken["dn"]): taken})
    )
    plan = engine.plan()
    creates = {c.cloud_id: c for c in plan.changes if c.target == TARGET_USER}
    sams = {c.attributes["sAMAccountName"] for c in creates.values()}
    upns = {c.attributes["userPrincipalName"] for c in creates.values()}
    assert len(sams) == 2 and "julia.keller" not in sams and all(len(str(s)) <= 20 for s in sams)
    assert len(upns) == 2 and "julia.keller@corp.test" not in upns
    engine.apply(plan)
    assert directory.users[normalize_dn(taken["dn"])] == taken  # the existing account is untouched
    assert len(directory.users) == 3


def test_no_upn_is_another_accounts_sam_account_name_at_the_domain():
    # B's UPN prefix cut to 15 characters is A's whole prefix. Whichever gets sAMAccountName avandenheuvel47,
    # the other's UPN must not be avandenheuvel47@domain: that is the first one's implicit UPN, and the DC
    # refuses it (Samba: "userPrincipalName ... is already in use (implied by sAMAccountName)"), found by
    # scripts/bench users at 20,000 accounts.
    for a_id, b_id in (
        ("00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"),
        ("00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000a"),
    ):
        a = cloud_user(a_id, "avandenheuvel47@contoso.example", display_name="A van den Heuvel")
        b = cloud_user(b_id, "avandenheuvel470@contoso.example", display_name="A van den Heuvel")
        engine, directory, _, _ = build([a, b])
        plan = engine.plan()
        creates = [c for c in plan.changes if c.target == TARGET_USER and c.kind is ChangeKind.CREATE]
        assert len(creates) == 2
        sams = {c.cloud_id: str(c.attributes["sAMAccountName"]).lower() for c in creates}
        upns = {c.cloud_id: str(c.attributes["userPrincipalName"]).lower() for c in creates}
        assert "avandenheuvel47" in sams.values()
        for uid, upn in upns.items():
            prefix = upn.split("@")[0]
            assert all(sam != prefix for other, sam in sams.items() if other != uid)
        engine.apply(plan)
        assert len(directory.users) == 2


def test_a_crash_between_create_and_log_never_makes_a_second_account():
    engine, directory, _, _ = build([cloud_user()])
    directory.crash_after_create_user = True
    with pytest.raises(KeyboardInterrupt):
        engine.apply(engine.plan())
    directory.crash_after_create_user = False
    assert len(directory.users) == 1
    plan = engine.plan()
    assert not [c for c in plan.changes if c.kind is ChangeKind.CREATE and c.target == TARGET_USER]
    engine.apply(plan)
    assert len(directory.users) == 1 and len(directory.passwords) == 1
    assert group_members(directory) == {normalize_dn(JULIA_DN)}


def test_an_unanchored_account_of_the_same_name_is_never_taken_over():
    squatter = {"dn": JULIA_DN, "guid": "g-sq", "objectSid": "S-1-5-21-1-2-3-5001", "sAMAccountName": "jk"}
    engine, directory, _, _ = build(
        [cloud_user()], directory=FakeDirectory(users={normalize_dn(JULIA_DN): squatter})
    )
    plan = engine.plan()
    assert not [c for c in plan.changes if c.target == TARGET_USER]
    (report,) = [r for r in plan.reports if r.target == TARGET_USER]
    assert "never takes over" in (report.error or "")
    engine.apply(plan)
    assert directory.users[normalize_dn(JULIA_DN)] == squatter and not directory.passwords
    assert not group_members(directory)  # the group does not reference someone else's account


def test_disable_on_leave_reenable_on_return_delete_on_hard_delete_held():
    julia = cloud_user()
    engine, directory, cloud, _ = build([julia], config=members_on(safety={"delete_threshold": 0}))
    engine.apply(engine.plan())
    account = directory.users[normalize_dn(JULIA_DN)]

    set_members(engine, cloud, [])  # left every in-scope group
    plan = engine.plan()
    (upd,) = [c for c in plan.changes if c.target == TARGET_USER]
    assert upd.kind is ChangeKind.UPDATE and upd.attributes == {"userAccountControl": str(0x202)}
    engine.apply(plan)
    assert account["userAccountControl"] == str(0x202) and not group_members(directory)

    set_members(engine, cloud, [julia])  # back
    plan = engine.plan()
    (upd,) = [c for c in plan.changes if c.target == TARGET_USER]
    assert upd.attributes == {"userAccountControl": str(0x200)}
    engine.apply(plan)
    assert account["userAccountControl"] == str(0x200)
    assert group_members(directory) == {normalize_dn(JULIA_DN)}

    cloud.users[JULIA] = cloud_user(account_enabled=False)  # disabled in the cloud
    engine.sync()
    engine.apply(engine.plan())
    assert account["userAccountControl"] == str(0x202)

    del cloud.users[JULIA]  # hard delete
    set_members(engine, cloud, [])
    plan = engine.plan()
    held = [c for c in plan.held if c.target == TARGET_USER]
    assert [c.kind for c in held] == [ChangeKind.DELETE]  # over safety.delete_threshold (0 here)
    engine.apply(plan)
    assert normalize_dn(JULIA_DN) in directory.users  # held: not deleted
    plan = engine.plan(allow=Allowances(deletes=1))
    assert [c.kind for c in plan.changes if c.target == TARGET_USER] == [ChangeKind.DELETE]
    engine.apply(plan)
    assert normalize_dn(JULIA_DN) not in directory.users


BOB = "44444444-0000-0000-0000-000000000004"


@pytest.mark.parametrize("policy", ["keep", "delete"])
def test_on_leave_keep_and_delete(policy):
    julia, bob = cloud_user(), cloud_user(BOB, "bob@contoso.example", display_name="Bob")
    engine, directory, cloud, _ = build([julia, bob], config=members_on(on_leave=policy))
    engine.apply(engine.plan())
    assert len(directory.users) == 2
    set_members(engine, cloud, [bob])  # Julia leaves
    plan = engine.plan()
    mine = [c for c in (*plan.changes, *plan.held) if c.target == TARGET_USER]
    if policy == "keep":
        assert not mine
        assert any("kept" in (r.note or "") for r in plan.reports if r.cloud_id == JULIA)
    else:
        assert [(c.kind, c.cloud_id) for c in mine] == [(ChangeKind.DELETE, JULIA)]
        engine.apply(plan)
        assert normalize_dn(JULIA_DN) not in directory.users and len(directory.users) == 1


def test_the_password_is_in_no_plan_saved_plan_log_or_error(tmp_path):
    store_path = tmp_path / "state.db"
    directory = FakeDirectory()
    user = cloud_user()
    group = CloudGroup(GROUP_ID, display_name="SG", members=frozenset({MemberRef("user", JULIA)}))
    cloud = FakeCloud(users={JULIA: user}, groups={GROUP_ID: group})
    engine = Engine(members_on(), cloud, directory, SqliteStore(str(store_path)))
    engine.sync()
    plan = engine.plan()
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan.to_dict()))
    result = engine.apply(Plan.from_dict(json.loads(saved.read_text())))
    assert all(r.ok for r in result.results)
    (password,) = directory.passwords
    texts = [json.dumps(plan.to_dict()), render_plan(plan), saved.read_text(), repr(result)]
    rows = engine.store.read_log()
    assert any(r.cloud_id == JULIA for r in rows)  # the create is logged, without its password
    texts += [repr(r) for r in rows]
    engine.close()
    blob = store_path.read_bytes()
    for text in texts:
        assert password not in text
    assert password.encode() not in blob and password.encode("utf-16-le") not in blob
    # The add itself refuses without TLS, and its error does not carry a password either.
    plain = FakeDirectory(tls=False)
    engine2 = Engine(
        members_on(), FakeCloud(users={JULIA: user}, groups={GROUP_ID: group}), plain, SqliteStore(":memory:")
    )
    engine2.sync()
    res = engine2.apply(engine2.plan())
    errors = [r.error for r in res.results if not r.ok]
    assert errors and "without TLS" in errors[0] and not plain.passwords


def test_a_rename_moves_the_account_and_the_group_follows():
    engine, directory, cloud, _ = build([cloud_user()])
    engine.apply(engine.plan())
    cloud.users[JULIA] = cloud_user(display_name="Julia Keller-Brandt")
    engine.sync()
    plan = engine.plan()
    mine = {c.kind: c for c in plan.changes if c.target == TARGET_USER}
    new_dn = f"CN=Julia Keller-Brandt_555566667777,{USERS_OU}"
    assert mine[ChangeKind.MOVE].new_dn == new_dn
    assert mine[ChangeKind.UPDATE].attributes == {"displayName": "Julia Keller-Brandt"}
    assert not [c for c in plan.changes if c.target != TARGET_USER], "the group's member follows the rename"
    engine.apply(plan)
    assert normalize_dn(new_dn) in directory.users and not engine.plan().changes


def test_a_protected_account_with_the_anchor_is_never_touched():
    entry = {
        "dn": JULIA_DN,
        "guid": "g-p",
        "objectSid": "S-1-5-21-1-2-3-5002",
        "sAMAccountName": "julia.keller",
        "msDS-ExternalDirectoryObjectId": f"User_{JULIA}",
        "adminDescription": f"User_{JULIA}",
        "userAccountControl": "512",
        "protected": True,
    }
    directory = FakeDirectory(users={normalize_dn(JULIA_DN): entry})
    engine, _, cloud, _ = build([cloud_user()], directory=directory)
    plan = engine.plan()
    assert not [c for c in plan.changes if c.target == TARGET_USER]
    engine.apply(plan)
    assert directory.users[normalize_dn(JULIA_DN)] == entry and not directory.passwords
    assert any("protected" in (r.error or "") for r in plan.reports if r.target == TARGET_USER)
    set_members(engine, cloud, [])  # leaving does not disable it either
    assert not [c for c in engine.plan().changes if c.target == TARGET_USER]


def test_cloud_only_members_are_not_looked_up_by_sid():
    engine, directory, _, _ = build([cloud_user()])
    engine.plan()
    assert ("search", "users by sid") not in directory.ops and ("search", "managed users") in directory.ops


def test_provision_on_demand_of_a_cloud_only_member_creates_only_her_account() -> None:
    from writeback.app.provision import provision_group
    from writeback.app.reconcile_pass import ReconcilePass

    engine, directory, _cloud, store = build([cloud_user()])
    steps: list[dict[str, Any]] = []
    outcome = provision_group(
        ReconcilePass(engine), "JULIA.KELLER@contoso.example", steps.append, run_id="r1"
    )
    assert outcome.result == "success", (outcome, steps)
    assert normalize_dn(JULIA_DN) in directory.users and not directory.groups, (
        "her account only, not the group"
    )
    assert [r.action for r in store.read_log(run_id="r1")] == ["create"]
    # With "soa" only, the same user is out of scope, and says why.
    soa, _, _, _ = build([cloud_user()], config=settings(users={"provision": "soa"}))
    skipped = provision_group(ReconcilePass(soa), JULIA, steps.append, run_id="r2")
    assert skipped.result == "skipped" and 'provision = "cloud_members" creates accounts' in skipped.summary
