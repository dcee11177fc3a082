"""Safety thresholds: deletes, member removals and updates are held past their limits, the rest applies."""

from tests.unit.test_planning import OU, U, actual, cloud, desired, plan_of
from writeback.core.planning import ChangeKind, Plan, Policy
from writeback.core.safety import Managed, Thresholds, hold_unsafe

MEMBERS = [f"CN=m{i},OU=Staff,DC=corp,DC=test" for i in range(100)]


def test_delete_threshold_holds_every_delete_and_says_how_to_allow():
    groups = [actual(f"g{i}", f"G{i}") for i in range(5)]
    plan = hold_unsafe(plan_of({}, groups, {}, Policy()), Managed.of(groups), Thresholds(delete_threshold=3))
    assert plan.changes == () and len(plan.held) == 5
    assert [h.kind for h in plan.holds] == ["deletes"] and "--allow-deletes 5" in plan.holds[0].message
    allowed = hold_unsafe(
        plan_of({}, groups, {}, Policy()),
        Managed.of(groups),
        Thresholds(delete_threshold=3, allow_deletes=5),
    )
    assert len(allowed.changes) == 5 and not allowed.holds


def _removal_plan(removed: int) -> tuple[Plan, list]:
    """Two managed groups of 50 members each; the cloud drops ``removed`` members of the first, adds one to the
    second and renames nothing."""
    a = actual("a", "A", MEMBERS[:50])
    b = actual("b", "B", MEMBERS[50:])
    want = {
        "a": desired("a", "A", MEMBERS[removed:50]),
        "b": desired("b", "B", [*MEMBERS[50:], U[0]]),
    }
    return plan_of(want, [a, b], cloud("a", "b"), Policy()), [a, b]


def test_member_removals_over_the_percentage_are_held_and_the_rest_is_applied():
    plan, managed = _removal_plan(40)  # 40 of 100 managed values = 40 % > 30 %
    held = hold_unsafe(plan, Managed.of(managed), Thresholds())
    assert [h.kind for h in held.holds] == ["removals"]
    assert (
        "40 of the 100 member values" in held.holds[0].message
        and "--allow-removals 40" in held.holds[0].message
    )
    assert [(c.kind, c.cloud_id) for c in held.held] == [(ChangeKind.REMOVE_MEMBERS, "a")]
    assert [(c.kind, c.cloud_id) for c in held.changes] == [(ChangeKind.ADD_MEMBERS, "b")]
    assert "a" not in held.fingerprints and "b" in held.fingerprints  # a has not converged
    allowed = hold_unsafe(plan, Managed.of(managed), Thresholds(allow_removals=40))
    assert not allowed.holds and len(allowed.changes) == 2


def test_removals_under_the_percentage_or_below_the_minimum_size_pass():
    plan, managed = _removal_plan(30)
    assert not hold_unsafe(plan, Managed.of(managed), Thresholds()).holds  # exactly 30 %
    small = actual("s", "S", MEMBERS[:10])
    tiny = plan_of({"s": desired("s", "S", [])}, [small], cloud("s"), Policy())
    assert not hold_unsafe(tiny, Managed.of([small]), Thresholds()).holds  # 10 values < 50: no percentage


def test_renames_over_the_percentage_are_held_with_what_needs_the_new_dn():
    groups = [actual(f"g{i}", f"G{i}") for i in range(10)]
    want = {f"g{i}": desired(f"g{i}", f"New{i}") for i in range(4)}  # 4 of 10 renamed: 40 % > 30 %
    want |= {f"g{i}": desired(f"g{i}", f"G{i}") for i in range(4, 10)}
    want["p"] = desired("p", "Parent", [f"CN=New0,{OU}", U[1]])  # a new group nesting a renamed one
    plan = plan_of(want, groups, cloud(*want), Policy())
    held = hold_unsafe(plan, Managed.of(groups), Thresholds())
    assert [h.kind for h in held.holds] == ["updates"]
    assert {c.cloud_id for c in held.held if c.kind is ChangeKind.MOVE} == {"g0", "g1", "g2", "g3"}
    # The new parent's member change writes G0's new DN, which does not exist while the rename is held; its
    # create (with the other members) still goes ahead.
    assert [(c.kind, c.cloud_id) for c in held.held if c.cloud_id == "p"] == [(ChangeKind.ADD_MEMBERS, "p")]
    assert (ChangeKind.CREATE, "p") in [(c.kind, c.cloud_id) for c in held.changes]
    assert not any(c.kind is ChangeKind.MOVE for c in held.changes)
