"""Render plans, apply results and log entries for people. Pure (returns strings).

A plan reads as an administrator's summary: one block per group with everything that happens to it — its
changes in the order they are written, the ones a safety threshold holds (marked HELD), its errors, notes and
members not written — and the warnings at the end, wrapped to :data:`WIDTH` under their marker. A DN and a
member value are never broken across lines.

Names, DNs, members, errors and notes come from the cloud or AD and may hold control characters: every line of
a plan and every cell of a table goes through :func:`~writeback.core.text.printable` (the template text around
the values holds none), so ESC cannot hide the rest of a plan and a newline cannot forge a line of it."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from writeback.core.model import TARGET_GROUP, TARGET_USER
from writeback.core.planning import Change, ChangeKind, GroupReport, Plan
from writeback.core.text import plural, printable

_LABELS = {
    ChangeKind.CREATE: "create",
    ChangeKind.UPDATE: "update",
    ChangeKind.MOVE: "rename/move",
    ChangeKind.ADD_MEMBERS: "add members",
    ChangeKind.REMOVE_MEMBERS: "remove members",
    ChangeKind.DELETE: "delete",
}
MAX_LISTED = 10
WIDTH = 110  # prose (warnings, holds, notes, errors) is wrapped to this; DN and member lines stay whole
HELD = "[HELD]"
_ALLOW_HINT = "`writeback allow` or --allow-deletes/--allow-removals/--allow-updates lets them through (see the warnings)."
_RIGHTS_HINT = "Grant the rights each group's note names (its dsacls lines), then apply again."
THRESHOLD_KINDS = ("deletes", "removals", "updates")  # the holds an allowance lets through
# A DN inside prose: RDNs up to each comma (a value may hold spaces), the last one up to a space. Its spaces
# are kept from textwrap by a placeholder that cannot occur in printable() text (it escapes every control).
# "30 %" stays together too.
_WHOLE = re.compile(r"(?:\b[A-Za-z][\w-]*=(?:[^,=\\]|\\.)*,)+[A-Za-z][\w-]*=[^\s,]*|\d+ %")
_KEEP = "\x00"


@dataclass
class _Block:
    """Everything the plan says about one group."""

    cloud_id: str
    name: str = ""
    target: str = TARGET_GROUP
    changes: list[Change] = field(default_factory=list)
    held: list[Change] = field(default_factory=list)
    reports: list[GroupReport] = field(default_factory=list)


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    lines: list[str] = []
    counts = plan.counts()
    mv = plan.member_value_counts()
    summary = ", ".join(f"{n} {_LABELS[ChangeKind(k)]}" for k, n in counts.items() if n)
    if plan.changes:
        head = (
            f"Plan: {summary} ({plural(mv['members_added'], 'member value')} to add, "
            f"{mv['members_removed']} to remove)"
        )
        lines += _wrap(head, "", "  ")
        if plan.held:
            lines.append(
                f"Held: {plural(len(plan.held), 'change')} {_held_by(plan)}, not applied ({HELD} below)"
            )
        if plan.drift:
            groups = len({c.cloud_id for c in plan.drift})
            revert = "reverts" if len(plan.drift) == 1 else "revert"
            lines.append(
                f"Drift: {plural(len(plan.drift), 'change')} {revert} manual edits in AD ({plural(groups, 'group')})"
            )
    elif plan.held:
        lines.append(
            f"Plan: no changes to apply now; {plural(len(plan.held), 'change')} held {_held_by(plan)} "
            f"({HELD} below)."
        )
    else:
        lines.append("Plan: no changes. AD matches the cloud.")
    if plan.scope:
        lines += _wrap(f"Compared: {plan.scope}", "", "  ")
    blocks = _blocks(plan)
    for block in (b for b in blocks if b.target == TARGET_GROUP):
        lines.append("")
        lines.extend(_block(block, verbose))
    users = [b for b in blocks if b.target == TARGET_USER]
    if users:  # [users]: their own section, after the groups
        created = sum(1 for c in plan.user_changes if c.kind is ChangeKind.CREATE)
        what = (
            f"{plural(created, 'new account')} for cloud-only members (names as shown; each gets a random "
            "password in the add, never shown or kept), and cloud users in their AD accounts"
            if created
            else "cloud users in their AD account"
        )
        lines += ["", f"Users ({plural(len(users), 'account')}: {what}):"]
    for block in users:
        lines.append("")
        lines.extend(_block(block, verbose))
    if plan.held:
        lines.append("")
        kinds = {h.kind for h in plan.holds}
        hints = ([_ALLOW_HINT] if kinds & set(THRESHOLD_KINDS) else []) + (
            [_RIGHTS_HINT] if "rights" in kinds else []
        )
        lines += _wrap(
            f"{HELD} {plural(len(plan.held), 'change')} held back, not applied: " + " ".join(hints), "", "  "
        )
    for w in (*(h.message for h in plan.holds), *plan.warnings):
        lines.append("")
        lines += _wrap(w, "WARNING: ", "         ")
    return "\n".join(lines)  # each line went through printable() once: its values' controls escaped


def _blocks(plan: Plan) -> list[_Block]:
    """One block per group or user account (by target and cloud id), in name order; inside, changes keep the
    plan's (write) order."""
    blocks: dict[tuple[str, str], _Block] = {}

    def block(target: str, cloud_id: str, name: str) -> _Block:
        b = blocks.setdefault((target, cloud_id), _Block(cloud_id, target=target))
        b.name = b.name or name
        return b

    for ch in plan.changes:
        block(ch.target, ch.cloud_id, ch.display_name or ch.dn).changes.append(ch)
    for ch in plan.held:
        block(ch.target, ch.cloud_id, ch.display_name or ch.dn).held.append(ch)
    for r in plan.reports:
        if r.error or r.skipped or r.note:
            block(r.target, r.cloud_id, r.display_name or r.dn or "").reports.append(r)
    return sorted(blocks.values(), key=lambda b: (b.name.casefold(), b.cloud_id))


def _block(block: _Block, verbose: bool) -> list[str]:
    lines = [printable(f"  {block.name or block.cloud_id}  [{block.cloud_id}]")]
    for ch in block.changes:
        lines += _change(ch, verbose, held=False)
    for ch in block.held:
        lines += _change(ch, verbose, held=True)
    for r in block.reports:
        if r.error:
            lines += _wrap(r.error, "    ! ", "      ")
        if r.note:
            lines += _wrap(r.note, "    . ", "      ")
        if r.skipped:
            lines.append(f"    . {plural(len(r.skipped), 'member')} not written to AD:")
            for s in r.skipped[: MAX_LISTED if not verbose else None]:
                who = f"{s.name} ({s.member_id})" if s.name else s.member_id
                lines.append(printable(f"        {s.kind} {who}: {s.reason}"))
            if not verbose and len(r.skipped) > MAX_LISTED:
                lines.append(f"        … and {len(r.skipped) - MAX_LISTED} more (--verbose for all)")
    return lines


def _change(ch: Change, verbose: bool, *, held: bool) -> list[str]:
    """One change: what it writes (old -> new values, members added or removed, the new DN of a move)."""
    mark = "+" if ch.kind is ChangeKind.CREATE else "-" if ch.kind is ChangeKind.DELETE else "~"
    line = f"    {mark} {_LABELS[ch.kind]}"
    values: list[str] = []
    if ch.kind is ChangeKind.MOVE:
        line += f": {ch.dn} -> {ch.new_dn}"
    elif ch.kind in (ChangeKind.CREATE, ChangeKind.DELETE):
        line += f": {ch.dn}"
    elif ch.kind is ChangeKind.UPDATE:
        old = ch.shown_previous()
        values = [
            f"{k}: {_shown(old.get(k), k in ch.redacted)} -> {_shown(v, k in ch.redacted)}"
            if k in old
            else f"{k}={_shown(v, k in ch.redacted)}"
            for k, v in sorted(ch.shown_attributes().items(), key=lambda kv: kv[0])
        ]
    if ch.members:
        line += f" ({plural(len(ch.members), 'member')})"
    tail = (f"  -- {ch.reason}" if ch.reason else "") + (f"  {HELD}" if held else "")
    inline = f"{line}: {', '.join(values)}{tail}" if values else line + tail
    # An update's values on one line when it fits, else one attribute a line (a value is never broken).
    lines = [printable(inline)] if len(printable(inline)) <= WIDTH or len(values) < 2 else None
    if lines is None:
        lines = [printable(line + tail)] + [printable(f"        {v}") for v in values]
    if (ch.members and ch.kind is not ChangeKind.CREATE) or (ch.members and verbose):
        shown = ch.members if verbose else ch.members[:MAX_LISTED]
        sign = "-" if ch.kind is ChangeKind.REMOVE_MEMBERS else "+"
        lines.extend(printable(f"        {sign} {m}") for m in shown)
        if len(ch.members) > len(shown):
            lines.append(f"        … and {len(ch.members) - len(shown)} more (--json or --verbose for all)")
    return lines


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """``text`` (escaped by printable()) wrapped to WIDTH after ``first``, continued under it with ``rest``;
    a DN in it is never broken (a DN longer than the width makes a longer line, whole)."""
    safe = _WHOLE.sub(lambda m: m.group().replace(" ", _KEEP), printable(text))
    wrapped = textwrap.wrap(
        safe,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(_KEEP, " ") for line in wrapped] or [first.rstrip()]


def _shown(value: object, redacted: bool) -> str:
    return str(value) if redacted and value is not None else repr(value)


def _held_by(plan: Plan) -> str:
    """What holds the plan's held changes: a safety threshold, missing rights in AD, or both."""
    kinds = {h.kind for h in plan.holds}
    by = [
        *(["by a safety threshold"] if kinds & set(THRESHOLD_KINDS) else []),
        *(["for rights the service account lacks in AD"] if "rights" in kinds else []),
    ]
    return " and ".join(by) or "by a safety threshold"


def render_table(rows: Iterable[Iterable[str]], headers: Iterable[str]) -> str:
    all_rows = [[printable(c) for c in r] for r in (headers, *rows)]  # widths count what the terminal shows
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
