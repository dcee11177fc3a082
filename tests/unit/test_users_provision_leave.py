"""Provision on demand of a user (``writeback provision USER``) whose account writeback created and who has left
every in-scope group, or was hard-deleted: the same decision every pass makes (``[users] on_leave``, a delete
behind the delete threshold), reported as its steps. Through the one pass with the fakes."""

from __future__ import annotations

from typing import Any

from tests.unit.test_users_cloud_members import GROUP_ID, JULIA, JULIA_DN, cloud_user, members_on
from tests.unit.test_users_leave import UAC_DISABLED, UAC_ENABLED, _account_of, _build, _members, _set
from writeback.app.engine import Allowances
from writeback.app.provision import ProvisionOutcome, Step, provision_group
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.core.dn import normalize_dn


def _provision(p: ReconcilePass, wanted: str) -> tuple[ProvisionOutcome, list[Step]]:
    steps: list[Step] = []
    outcome = provision_group(p, wanted, steps.append, run_id="run-1")
    return outcome, steps


def _step(steps: list[Step], kind: str) -> Step:
    """The last step of ``kind`` (the import steps are the sync, then the user found)."""
    return [s for s in steps if s["type"] == kind][-1]


def _left(config: Any = None) -> tuple[ReconcilePass, Any, Any, Any]:
    julia = cloud_user()
    engine, directory, cloud, store = _build({GROUP_ID: [julia]}, [julia], config)
    p = ReconcilePass(engine)
    p.run(PassOptions(kind="full", deep=True))
    assert _account_of(directory, JULIA_DN)["userAccountControl"] == UAC_ENABLED
    return p, directory, cloud, store


def test_provision_of_a_user_who_left_every_group_disables_her_account_by_id_or_upn():
    p, directory, cloud, _ = _left()
    _set(cloud, {GROUP_ID: []})  # removed from her only group; no pass has run since
    outcome, steps = _provision(p, "Julia.Keller@contoso.example")
    assert outcome.result == "success", outcome
    assert "held by no in-scope group" in _step(steps, "import")["description"]
    scoping = _step(steps, "scoping")
    assert scoping["status"] == "success" and 'on_leave = "disable"' in scoping["description"]
    processing = _step(steps, "processing")
    assert [(c["kind"], c["target"]) for c in processing["details"]["changes"]] == [("update", "user")]
    assert _step(steps, "export")["status"] == "success"
    assert _account_of(directory, JULIA_DN)["userAccountControl"] == UAC_DISABLED
    # The user pass writes only her account: the AD group is reconciled by the group's own pass.
    assert _members(directory, "SG-1") == {normalize_dn(JULIA_DN)}

    again, steps = _provision(p, JULIA)  # by object id: nothing left to decide
    assert again.summary == "succeeded: AD already matches the cloud"
    assert _step(steps, "processing")["description"] == "nothing to change"


def test_provision_of_a_user_who_left_applies_on_leave_delete_and_keep():
    p, directory, cloud, _ = _left(members_on(on_leave="delete"))
    _set(cloud, {GROUP_ID: []})
    outcome, steps = _provision(p, JULIA)
    assert outcome.result == "success"
    assert [c["kind"] for c in _step(steps, "processing")["details"]["changes"]] == ["delete"]
    assert normalize_dn(JULIA_DN) not in directory.users

    p, directory, cloud, _ = _left(members_on(on_leave="keep"))
    _set(cloud, {GROUP_ID: []})
    outcome, _ = _provision(p, JULIA)
    assert outcome.summary == "succeeded: AD already matches the cloud"
    assert _account_of(directory, JULIA_DN)["userAccountControl"] == UAC_ENABLED


def test_provision_of_a_hard_deleted_user_deletes_her_account_behind_the_threshold():
    p, directory, cloud, _ = _left(members_on(safety={"delete_threshold": 0}))
    del cloud.users[JULIA]
    _set(cloud, {GROUP_ID: []})
    outcome, steps = _provision(p, JULIA)
    assert outcome.result == "held", outcome
    assert "hard-deleted" in _step(steps, "import")["description"]
    assert "a hard delete deletes it" in _step(steps, "scoping")["description"]
    assert _step(steps, "processing")["status"] == "warning"
    assert normalize_dn(JULIA_DN) in directory.users

    done = p.run(PassOptions(kind="group", group=JULIA, allow=Allowances(deletes=1)))
    assert done.applied is not None and done.applied.ok
    assert normalize_dn(JULIA_DN) not in directory.users
    # Gone from the replica and with no account any more: an unknown id, as before.
    outcome, _ = _provision(p, JULIA)
    assert outcome.result == "failure" and "no single cloud group or user" in outcome.summary


def test_a_user_in_no_group_without_an_account_of_writebacks_is_still_out_of_scope():
    p, directory, cloud, _ = _left()
    stranger = cloud_user(
        "55555555-0000-0000-0000-000000000005", "stranger@contoso.example", display_name="S"
    )
    cloud.users[stranger.id] = stranger
    outcome, steps = _provision(p, stranger.id)
    assert outcome.result == "skipped"
    assert _step(steps, "scoping")["details"]["reason"] == "not a member of any group in writeback's scope"
    # A synced (not cloud-managed) user is never decided by a leave either: SOA / Connect own its account.
    p, directory, cloud, _ = _left(members_on(on_leave="delete"))
    _set(cloud, {GROUP_ID: []})
    cloud.users[JULIA] = cloud_user(on_premises_sync_enabled=True)
    outcome, _ = _provision(p, JULIA)
    assert outcome.result == "skipped" and normalize_dn(JULIA_DN) in directory.users
