"""Issue 28: the plan as an administrator reads it — one block per group with all of its changes in write
order (held ones marked in the same block), its notes and skipped members; prose wrapped to the width under
its marker; DN and member lines whole."""

from __future__ import annotations

import re

from writeback.cli.report import WIDTH, render_plan
from writeback.core.model import SkippedMember
from writeback.core.planning import Change, ChangeKind, GroupReport, Hold, Plan

OU = "OU=Writeback,DC=corp,DC=test"


def user(i: int) -> str:
    return f"CN=User {i:02d},OU=Users,DC=corp,DC=test"


FINANCE_CREATE = Change(
    ChangeKind.CREATE, "id-fin", f"CN=Finance,{OU}", "Finance", members=(user(1), user(2))
)
FINANCE_ADD = Change(
    ChangeKind.ADD_MEMBERS,
    "id-fin",
    f"CN=Finance,{OU}",
    "Finance",
    members=(f"CN=Nested,{OU}",),
    reason="nested groups created or renamed in this plan",
)
SALES_UPDATE = Change(
    ChangeKind.UPDATE,
    "id-sales",
    f"CN=Sales,{OU}",
    "Sales EU",
    attributes={"description": "EU sales"},
    previous={"description": "Sales"},
)
SALES_MOVE = Change(ChangeKind.MOVE, "id-sales", f"CN=Sales,{OU}", "Sales EU", new_dn=f"CN=Sales EU,{OU}")
SALES_REMOVE = Change(
    ChangeKind.REMOVE_MEMBERS, "id-sales", f"CN=Sales EU,{OU}", "Sales EU", members=(user(3), user(4))
)
TEMPS_HELD = Change(
    ChangeKind.REMOVE_MEMBERS,
    "id-temps",
    f"CN=Temps,{OU}",
    "Temps",
    members=tuple(user(i) for i in range(12)),
)
REMOVALS = Hold(
    "removals",
    12,
    5,
    "Member removal threshold exceeded: 12 of the 40 member values writeback manages would be removed (30 %, "
    "safety.member_removal_percent is 10). No member is removed. Review them with 'writeback plan', then run "
    "'writeback apply --allow-removals 12' (or 'writeback allow --removals 12' for a running service).",
)


def three_groups() -> Plan:
    """A create + member add for one group, an update + rename + removals for another, a held removal for a
    third; the changes in the plan's (write) order: by kind, as compute_plan sorts them."""
    changes = (FINANCE_CREATE, SALES_UPDATE, SALES_MOVE, FINANCE_ADD, SALES_REMOVE)
    skipped = GroupReport(
        "id-fin",
        "Finance",
        f"CN=Finance,{OU}",
        skipped=(SkippedMember("m1", "user", "cloud-only user", "Ann"),),
    )
    return Plan(changes, (skipped,), (TEMPS_HELD,), (REMOVALS,))


def block(text: str, header: str) -> list[str]:
    """The lines of one group's block: its header line up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start + 1 : end]


def test_each_group_is_one_block_with_its_changes_in_write_order() -> None:
    text = render_plan(three_groups())
    headers = [line for line in text.splitlines() if re.fullmatch(r"  \S.*  \[id-\w+\]", line)]
    assert headers == ["  Finance  [id-fin]", "  Sales EU  [id-sales]", "  Temps  [id-temps]"]  # once each
    assert block(text, "  Finance  [id-fin]") == [
        f"    + create: CN=Finance,{OU} (2 members)",
        "    ~ add members (1 member)  -- nested groups created or renamed in this plan",
        f"        + CN=Nested,{OU}",
        "    . 1 member not written to AD:",
        "        user Ann (m1): cloud-only user",
    ]
    assert block(text, "  Sales EU  [id-sales]") == [
        "    ~ update: description: 'Sales' -> 'EU sales'",
        f"    ~ rename/move: CN=Sales,{OU} -> CN=Sales EU,{OU}",
        "    ~ remove members (2 members)",
        f"        - {user(3)}",
        f"        - {user(4)}",
    ]


def test_a_held_change_is_marked_in_its_groups_block_and_the_way_through_is_said_once() -> None:
    text = render_plan(three_groups())
    temps = block(text, "  Temps  [id-temps]")
    assert temps[0] == "    ~ remove members (12 members)  [HELD]"
    assert temps[1:11] == [f"        - {user(i)}" for i in range(10)]
    assert temps[11] == "        … and 2 more (--json or --verbose for all)"
    assert "Held: 1 change by a safety threshold, not applied ([HELD] below)" in text.splitlines()[:3]
    assert text.count("[HELD]") == 3  # the summary, the change, the footer that says how to let it through
    assert "[HELD] 1 change held back, not applied: `writeback allow` or --allow-deletes" in text


def test_only_held_changes_say_nothing_applies_now() -> None:
    text = render_plan(Plan(held=(TEMPS_HELD,), holds=(REMOVALS,)))
    assert text.splitlines()[0] == (
        "Plan: no changes to apply now; 1 change held by a safety threshold ([HELD] below)."
    )
    assert "    ~ remove members (12 members)  [HELD]" in text


def test_a_group_with_only_notes_or_errors_has_its_own_block() -> None:
    refused = GroupReport("id-p", "Protected", f"CN=P,{OU}", error="refused: a protected group")
    noted = GroupReport("id-n", "Noted", None, note="kept: the cloud group is out of scope")
    text = render_plan(Plan(reports=(refused, noted)))
    assert block(text, "  Noted  [id-n]") == ["    . kept: the cloud group is out of scope"]
    assert block(text, "  Protected  [id-p]") == ["    ! refused: a protected group"]
    assert "Notes:" not in text


def test_verbose_lists_every_member_and_every_skipped_one() -> None:
    many = tuple(SkippedMember(f"m{i}", "user", "cloud-only user") for i in range(12))
    plan = Plan((FINANCE_CREATE,), (GroupReport("id-fin", "Finance", None, skipped=many),), (TEMPS_HELD,))
    short, full = render_plan(plan), render_plan(plan, verbose=True)
    assert f"        + {user(1)}" not in short and f"        + {user(1)}" in full  # a create's members
    assert "… and 2 more (--verbose for all)" in short and "        user m11: cloud-only user" in full
    assert f"        - {user(11)}" in full and "more" not in full


def test_warnings_holds_and_errors_wrap_under_their_marker_at_the_width() -> None:
    long_error = "refused: " + " ".join(["this group cannot be written because of a long reason"] * 6)
    long_warning = "the sync skipped " + " ".join(["an object with a long explanation"] * 12)
    plan = Plan(
        (SALES_REMOVE,),
        (GroupReport("id-sales", "Sales EU", None, error=long_error),),
        holds=(REMOVALS,),
        warnings=(long_warning,),
    )
    lines = render_plan(plan).splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    for prefix, indent, whole in (
        ("WARNING: ", " " * 9, REMOVALS.message),
        ("WARNING: ", " " * 9, long_warning),
        ("    ! ", " " * 6, long_error),
    ):
        (first,) = [i for i, line in enumerate(lines) if line.startswith(prefix + whole[:25])]
        rest = lines[first + 1 :]
        continued = rest[: next((i for i, line in enumerate(rest) if not line.startswith(indent)), len(rest))]
        assert len(continued) >= 2, whole  # wrapped, not one long line
        assert all(line[len(indent)] != " " for line in continued)  # aligned under the text, not deeper
        # nothing lost or added: the lines joined again are the text
        assert " ".join([lines[first][len(prefix) :], *(c[len(indent) :] for c in continued)]) == whole
    assert any(line.startswith("         (30 %, safety") for line in lines)  # "30 %" is kept together


def test_a_dn_in_a_warning_is_never_broken_and_member_lines_stay_whole() -> None:
    dn = "CN=Domain Admins Mirror With A Long Name,OU=Groups With Long Names,OU=Writeback,DC=corp,DC=test"
    member = "CN=" + "Very Long Member Name " * 6 + ",OU=Users,DC=corp,DC=test"
    text = render_plan(
        Plan(
            (Change(ChangeKind.ADD_MEMBERS, "id-a", f"CN=A,{OU}", "A", members=(member,)),),
            warnings=(f"the DN {dn} is held by an object writeback does not own; " + "rename it " * 10,),
        )
    )
    assert any(dn in line for line in text.splitlines())
    assert f"        + {member}" in text.splitlines()  # longer than the width, yet on one line
    prose = [line for line in text.splitlines() if line.startswith(("WARNING:", "         "))]
    assert len(prose) >= 2 and all(len(line) <= WIDTH for line in prose if dn not in line)


def test_an_update_of_many_attributes_lists_one_a_line_when_they_do_not_fit() -> None:
    values = {f"extensionAttribute{i}": "a value from the cloud" for i in range(1, 6)}
    update = Change(
        ChangeKind.UPDATE, "id-u", f"CN=U,{OU}", "U", attributes=values, previous=dict.fromkeys(values, "old")
    )
    lines = block(render_plan(Plan((update,))), "  U  [id-u]")
    assert lines[0] == "    ~ update"
    assert lines[1:] == [
        f"        extensionAttribute{i}: 'old' -> 'a value from the cloud'" for i in range(1, 6)
    ]
