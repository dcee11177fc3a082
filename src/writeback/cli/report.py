"""Render plans, apply results and log entries for people. Pure (returns strings).

Names, DNs, members, errors and notes come from the cloud or AD and may hold control characters: every line of
a plan and every cell of a table goes through :func:`~writeback.core.text.printable` (the template text around
the values holds none), so ESC cannot hide the rest of a plan and a newline cannot forge a line of it."""

from __future__ import annotations

from collections.abc import Iterable

from writeback.core.planning import Change, ChangeKind, Plan
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


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    lines: list[str] = []
    counts = plan.counts()
    mv = plan.member_value_counts()
    summary = ", ".join(f"{n} {_LABELS[ChangeKind(k)]}" for k, n in counts.items() if n)
    if plan.changes:
        lines.append(
            f"Plan: {summary} ({plural(mv['members_added'], 'member value')} to add, "
            f"{mv['members_removed']} to remove)"
        )
        if plan.drift:
            groups = len({c.cloud_id for c in plan.drift})
            revert = "reverts" if len(plan.drift) == 1 else "revert"
            lines.append(
                f"Drift: {plural(len(plan.drift), 'change')} {revert} manual edits in AD ({plural(groups, 'group')})"
            )
    elif plan.held:
        lines.append(
            f"Plan: no changes to apply now; {plural(len(plan.held), 'change')} held by a safety threshold (below)."
        )
    else:
        lines.append("Plan: no changes. AD matches the cloud.")
    if plan.scope:
        lines.append(f"Compared: {plan.scope}")
    lines.extend(_changes(plan.changes, verbose))
    if plan.held:
        lines.append("")
        lines.append(
            f"Held back by a safety threshold, not applied ({len(plan.held)}); "
            "`writeback allow` or --allow-deletes/--allow-removals/--allow-updates lets them through:"
        )
        lines.extend(_changes(plan.held, verbose))
    issues = [r for r in plan.reports if r.error or r.skipped or r.note]
    if issues:
        lines.append("")
        lines.append("Notes:")
        for r in issues:
            name = f"{r.display_name or r.dn or r.cloud_id} [{r.cloud_id}]"
            if r.error:
                lines.append(f"  ! {name}: {r.error}")
            if r.note:
                lines.append(f"  . {name}: {r.note}")
            if r.skipped:
                lines.append(f"  . {name}: {plural(len(r.skipped), 'member')} not written to AD")
                for s in r.skipped[: MAX_LISTED if not verbose else None]:
                    who = f"{s.name} ({s.member_id})" if s.name else s.member_id
                    lines.append(f"        {s.kind} {who}: {s.reason}")
                if not verbose and len(r.skipped) > MAX_LISTED:
                    lines.append(f"        … and {len(r.skipped) - MAX_LISTED} more")
    for w in (*(h.message for h in plan.holds), *plan.warnings):
        lines.append("")
        lines.append(f"WARNING: {w}")
    return "\n".join(printable(line) for line in lines)  # each line is one line: its values' controls escaped


def _changes(changes: Iterable[Change], verbose: bool) -> list[str]:
    """Each change under its group: what it writes (old -> new values, members added or removed, the new DN
    of a move), for applied and held changes alike."""
    lines: list[str] = []
    current = None
    for ch in changes:
        header = f"{ch.display_name or ch.dn}  [{ch.cloud_id}]"
        if header != current:
            lines.append("")
            lines.append(f"  {header}")
            current = header
        mark = "+" if ch.kind is ChangeKind.CREATE else "-" if ch.kind is ChangeKind.DELETE else "~"
        line = f"    {mark} {_LABELS[ch.kind]}"
        if ch.kind is ChangeKind.MOVE:
            line += f": {ch.dn} -> {ch.new_dn}"
        elif ch.kind in (ChangeKind.CREATE, ChangeKind.DELETE):
            line += f": {ch.dn}"
        elif ch.kind is ChangeKind.UPDATE:
            old = ch.shown_previous()
            line += ": " + ", ".join(
                f"{k}: {_shown(old.get(k), k in ch.redacted)} -> {_shown(v, k in ch.redacted)}"
                if k in old
                else f"{k}={_shown(v, k in ch.redacted)}"
                for k, v in sorted(ch.shown_attributes().items(), key=lambda kv: kv[0])
            )
        if ch.members:
            line += f" ({plural(len(ch.members), 'member')})"
        if ch.reason:
            line += f"  -- {ch.reason}"
        lines.append(line)
        if (ch.members and ch.kind is not ChangeKind.CREATE) or (ch.members and verbose):
            shown = ch.members if verbose else ch.members[:MAX_LISTED]
            sign = "-" if ch.kind is ChangeKind.REMOVE_MEMBERS else "+"
            lines.extend(f"        {sign} {m}" for m in shown)
            if len(ch.members) > len(shown):
                lines.append(
                    f"        … and {len(ch.members) - len(shown)} more (--json or --verbose for all)"
                )
    return lines


def _shown(value: object, redacted: bool) -> str:
    return str(value) if redacted and value is not None else repr(value)


def render_table(rows: Iterable[Iterable[str]], headers: Iterable[str]) -> str:
    all_rows = [[printable(c) for c in r] for r in (headers, *rows)]  # widths count what the terminal shows
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
