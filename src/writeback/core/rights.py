"""Rights checked before apply: the changes of a group the service account may not write are held. Pure.

writeback's delegation (docs/least-privilege.md) is on its target OUs. A group it writes elsewhere — the
original AD group of an SOA-converted cloud group, kept where it is, or a group Entra Connect wrote and
writeback took over in place — carries only the rights an administrator granted on it, and without them the
first write failed at apply with a raw ``INSUFFICIENT_ACCESS … has no write property access``.

The gathering step reads ``allowedAttributesEffective`` with every group it reads (one more attribute of the
same search, :attr:`DirectoryGroup.writable`). The DC computes it for the bound account from the object's
security descriptor: the attributes of the object's classes it has RIGHT_DS_WRITE_PROPERTY on, forward links
such as ``member`` included, constructed attributes left out ([MS-ADTS] 3.1.1.4.5.7 "allowedAttributesEffective";
learn.microsoft.com/openspecs/windows_protocols/ms-adts/c16a23d1-6847-4b25-9f6b-f09fc29e8627). A modify needs
exactly that right on every attribute it writes ([MS-ADTS] 3.1.1.5.3.1), so the answer says before apply what
AD would refuse. Samba computes it the same way (its ``acl`` module), which the integration tests check.

:func:`hold_unwritable` compares each planned change of an existing group with it:

- an update needs Write on every attribute it sets (mapped text, the anchor a takeover stamps first,
  ``groupType``, ``sAMAccountName``);
- member adds and removals need Write ``member``;
- a rename (the CN changes) needs Write ``cn`` and ``name`` (docs/least-privilege.md, measured); ``cn`` is
  checked (``name`` is never listed, see :data:`RENAME_CHECKED`) and both are granted.

A group missing one of them has *all* its changes held (not attempted: a half-written group is worse than an
untouched one) with a report naming the attributes and the exact ``dsacls`` lines that grant them
(:func:`dsacls_lines`, the one place they are built; docs/least-privilege.md shows the same lines). The rest of
the plan applies. Not checked here, because AD exposes no such attribute for them: the Delete right a move
out of an OU or a delete needs, and Create Child on a move's new parent (``config check`` reads both for the
target OUs); a create needs no Write right (Create Child covers the attributes of the add).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from writeback.core.desired import DesiredState
from writeback.core.dn import normalize_dn, rdn_value
from writeback.core.model import TARGET_GROUP, TARGET_USER, DirectoryGroup, DirectoryUser
from writeback.core.planning import Change, ChangeKind, GroupReport, Hold, Plan

HOLD_KIND = (
    "rights"  # Hold.kind of the changes held here (the safety thresholds use deletes/removals/updates)
)
MEMBER = "member"
# A rename writes the RDN attribute (cn) and name. allowedAttributesEffective never lists name: it is
# systemOnly, written by AD itself on a Modify DN (measured: Samba leaves it out even for Administrator), so
# cn is checked and both are granted.
RENAME_CHECKED = ("cn",)
RENAME_GRANTED = ("cn", "name")


def needed_attributes(change: Change) -> tuple[str, ...]:
    """The attributes ``change`` writes on an existing group, each needing Write Property there."""
    if change.kind is ChangeKind.UPDATE:
        return tuple(change.attributes)
    if change.kind in (ChangeKind.ADD_MEMBERS, ChangeKind.REMOVE_MEMBERS):
        return (MEMBER,)
    if change.kind is ChangeKind.MOVE and change.new_dn and rdn_value(change.dn) != rdn_value(change.new_dn):
        return RENAME_CHECKED
    return ()  # a create (Create Child covers it), a delete or a move to another OU: no attribute written


def dsacls_lines(target: str, attributes: Iterable[str]) -> tuple[str, ...]:
    """The ``dsacls`` commands that grant the service account (``%SVC%``, set as in docs/least-privilege.md)
    Write Property of ``attributes`` on the object ``target`` itself (no ``/I``: that object only).

    The one place these lines are built: the plan's and ``config check``'s reports use it with a group's DN,
    docs/least-privilege.md shows it with ``%GRP%`` (a unit test keeps them the same)."""
    return tuple(f'dsacls "{target}" /G "%SVC%:WP;{a}"' for a in attributes)


def missing_rights(group: DirectoryGroup | DirectoryUser, needed: Iterable[str]) -> tuple[str, ...]:
    """Of ``needed``, the attributes the bound account may not write on ``group`` (none when not read)."""
    if group.writable is None:
        return ()
    allowed = {a.lower() for a in group.writable}
    return tuple(dict.fromkeys(a for a in needed if a.lower() not in allowed))


def rights_message(dn: str, missing: Sequence[str], grant: Sequence[str]) -> str:
    """One line (plans print a line per note): what is missing where, and the dsacls lines for ``grant``."""
    lines = " ; ".join(dsacls_lines(dn, grant))
    return (
        f"writeback's service account may not write {', '.join(missing)} on {dn}, so its changes are held "
        "(not attempted). As a domain administrator, grant them on the group (docs/least-privilege.md, "
        f'"Groups taken over outside the target OU"; SVC is the service account, DOMAIN\\name): {lines} ; '
        "then plan again"
    )


def hold_unwritable(plan: Plan, state: DesiredState) -> Plan:
    """``plan`` with the changes of every existing group lacking a right they need moved to ``plan.held``,
    one :class:`Hold` per group (kind :data:`HOLD_KIND`) and an error in the group's report. Pure.

    What a held rename would have made possible is held with it: changes writing the group's new DN as a
    member value elsewhere."""
    current: dict[str, DirectoryGroup | DirectoryUser] = {
        g.cloud_id: g for g in (*state.actual, *state.released) if g.cloud_id
    }
    # User accounts ([users]) are written by the same updates and need the same Write Property rights.
    current.update({k: a for k, a in state.user_actual.items()})
    current.update({a.cloud_id: a for a in state.users_released if a.cloud_id})
    needed: dict[str, list[str]] = {}
    for c in plan.changes:
        if c.cloud_id in current:
            needed.setdefault(c.cloud_id, []).extend(needed_attributes(c))
    refused: dict[str, tuple[str, ...]] = {}
    for cid, attrs in needed.items():
        if missing := missing_rights(current[cid], attrs):
            refused[cid] = missing
    if not refused:
        return plan
    new_dns = {
        normalize_dn(c.new_dn): c.cloud_id
        for c in plan.changes
        if c.cloud_id in refused and c.kind is ChangeKind.MOVE and c.new_dn
    }
    held_for: dict[int, str] = {}  # id(change) -> the refused group it is held for
    for c in plan.changes:
        if c.cloud_id in refused:
            held_for[id(c)] = c.cloud_id
        elif by := next((new_dns[k] for m in c.members if (k := normalize_dn(m)) in new_dns), None):
            held_for[id(c)] = by
    held = [c for c in plan.changes if id(c) in held_for]
    holds = []
    messages: dict[str, str] = {}
    for cid, missing in sorted(refused.items()):
        g = current[cid]
        grant = _to_grant(missing, g, state)
        messages[cid] = rights_message(g.dn, missing, grant)
        mine = [c for c in held if held_for[id(c)] == cid]
        others = sorted({c.cloud_id for c in mine} - {cid})
        name = next((c.display_name for c in mine if c.cloud_id == cid and c.display_name), g.dn)
        holds.append(
            Hold(
                HOLD_KIND,
                len(mine),
                0,
                f"{name}: {len(mine)} change(s) held, not attempted: writeback's service account may not write "
                f"{', '.join(missing)} on {g.dn}. Grant the rights (the dsacls lines in the group's note), "
                "then apply again; 'writeback allow' does not let these through",
                groups=(cid, *others),
            )
        )
    touched = {c.cloud_id for c in held}
    return replace(
        plan,
        changes=tuple(c for c in plan.changes if id(c) not in held_for),
        held=tuple(sorted((*plan.held, *held), key=Change.sort_key)),
        holds=(*plan.holds, *holds),
        reports=_with_errors(plan.reports, messages, current, plan.changes),
        fingerprints={k: v for k, v in plan.fingerprints.items() if k not in touched},
    )


def _to_grant(
    missing: Sequence[str], g: DirectoryGroup | DirectoryUser, state: DesiredState
) -> tuple[str, ...]:
    """What to grant: the attributes missing now, and every other one writeback writes on this group that it
    may not write yet (members and its mapped attributes), so one round of dsacls is enough. On a user
    account: its mapped attributes and anchor."""
    desired = state.groups.get(g.cloud_id or "")
    user = state.users.get(g.cloud_id or "") if isinstance(g, DirectoryUser) else None
    later: tuple[str, ...] = ()
    if desired is not None and isinstance(g, DirectoryGroup):
        later = (MEMBER, *(k for k, v in desired.attributes.items() if v not in (None, "")))
    elif user is not None:
        later = tuple(k for k, v in user.attributes.items() if v not in (None, ""))
    wanted = (*missing, *missing_rights(g, later))
    return tuple(dict.fromkeys(a for w in wanted for a in (RENAME_GRANTED if w == "cn" else (w,))))


def _with_errors(
    reports: Sequence[GroupReport],
    messages: Mapping[str, str],
    current: Mapping[str, DirectoryGroup | DirectoryUser],
    changes: Sequence[Change],
) -> tuple[GroupReport, ...]:
    """``reports`` with each refused group's message as its error (a report of its own when it had none)."""
    out: list[GroupReport] = []
    seen: set[str] = set()
    for r in reports:
        if r.cloud_id in messages and r.error is None:  # a group with an error has no changes to hold
            r = replace(r, error=messages[r.cloud_id])
            seen.add(r.cloud_id)
        out.append(r)
    for cid in sorted(messages.keys() - seen):
        g = current[cid]
        name = next((c.display_name for c in changes if c.cloud_id == cid and c.display_name), "")
        out.append(
            GroupReport(
                cid,
                name or str(g.attributes.get("displayName") or ""),
                g.dn,
                error=messages[cid],
                target=TARGET_USER if isinstance(g, DirectoryUser) else TARGET_GROUP,
            )
        )
    return tuple(sorted(out, key=lambda r: (r.display_name.lower(), r.cloud_id)))
