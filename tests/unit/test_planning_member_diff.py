"""The member difference of one group (issue 17: a deep reconcile compares 1,000,000 member values)."""

from __future__ import annotations

from writeback.core.planning import member_diff

A = "CN=Anna,OU=Staff,DC=corp,DC=example,DC=test"
B = "CN=Bram,OU=Staff,DC=corp,DC=example,DC=test"
C = "CN=Cas,OU=Staff,DC=corp,DC=example,DC=test"
OLD = "CN=Old,OU=Groups,DC=corp,DC=example,DC=test"
NEW = "CN=New,OU=Groups,DC=corp,DC=example,DC=test"


def test_equal_members_change_nothing() -> None:
    assert member_diff(frozenset({A, B}), frozenset({A, B}), {}) == ((), ())


def test_adds_and_removes_are_sorted() -> None:
    assert member_diff(frozenset({C, A}), frozenset({B}), {}) == ((A, C), (B,))


def test_dns_compare_as_ad_compares_them() -> None:
    """Case and spacing after commas are not differences (AD matches DNs case-insensitively)."""
    assert member_diff(frozenset({A.upper()}), frozenset({A.replace(",", ", ")}), {}) == ((), ())


def test_a_member_renamed_in_the_same_plan_is_compared_at_its_new_dn() -> None:
    renamed = {OLD.lower(): NEW}
    assert member_diff(frozenset({NEW}), frozenset({OLD}), renamed) == ((), ())
    assert member_diff(frozenset({A}), frozenset({OLD}), renamed) == ((A,), (NEW,))


def test_exactly_equal_sets_with_a_rename_still_go_through_it() -> None:
    """The shortcut for equal sets must not skip a rename: here the desired DN is the renamed group's old one,
    which another group will hold, and the renamed group must be removed."""
    renamed = {OLD.lower(): NEW}
    assert member_diff(frozenset({OLD}), frozenset({OLD}), renamed) == ((OLD,), (NEW,))
