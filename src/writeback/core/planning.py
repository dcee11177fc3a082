"""Compute the plan: the ordered LDAP-level changes that make AD match the desired state. Pure.

``compute_plan`` takes immutable values (desired groups, the managed AD groups as read, what the cloud says
about groups that are no longer desired) and returns a :class:`Plan`. It reads nothing, writes nothing and
looks at no clock, so every product rule here is unit-tested without a directory.

Ownership: only groups carrying the ``Group_<objectId>`` anchor are ever changed or deleted; protected groups
(adminCount, critical system objects) are reported and left alone; a create whose DN is held by an object
writeback does not own is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from writeback.core.dn import normalize_dn
from writeback.core.model import AttributeValue, CloudGroup, DesiredGroup, DirectoryGroup, SkippedMember

# A value a change writes: an attribute value, or an int (groupType); tuples are multi-valued (proxyAddresses).
ChangeValue = str | int | tuple[str, ...] | None
PLAN_FORMAT = 2  # 2: held changes of every kind (1 had blocked deletes only)
REDACTED = "[redacted]"  # what plans show for the value of an attribute mapped with Redact()


class ChangeKind(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    MOVE = "move"
    ADD_MEMBERS = "add_members"
    REMOVE_MEMBERS = "remove_members"
    DELETE = "delete"


# Creates first (nested references need their targets), attribute updates at the current DN, then renames,
# then member changes (member values use the new DNs), deletes last.
ORDER = {k: i for i, k in enumerate(ChangeKind)}


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    cloud_id: str
    dn: str  # the object's DN when the change runs
    display_name: str = ""
    new_dn: str | None = None
    attributes: Mapping[str, ChangeValue] = field(default_factory=dict)
    members: tuple[str, ...] = ()
    reason: str = ""
    # Attributes mapped with Redact(): their values are written to AD but never shown (text, JSON, saved plans).
    redacted: frozenset[str] = frozenset()
    # An update's values before it, as AD held them (the log's and console's "old value"; not written).
    previous: Mapping[str, ChangeValue] = field(default_factory=dict)

    def sort_key(self) -> tuple[int, str, str]:
        return (ORDER[self.kind], normalize_dn(self.dn), self.cloud_id)

    def shown_attributes(self) -> dict[str, ChangeValue]:
        """The attributes as plans and logs may show them: a redacted value is "[redacted]" (a clear stays None)."""
        return {
            k: REDACTED if k in self.redacted and v is not None else v for k, v in self.attributes.items()
        }

    def shown_previous(self) -> dict[str, ChangeValue]:
        """The values before the change as plans and logs may show them (redacted like the new ones)."""
        return {k: REDACTED if k in self.redacted and v is not None else v for k, v in self.previous.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["attributes"] = self.shown_attributes()
        d["members"] = list(self.members)
        if self.previous:
            d["previous"] = self.shown_previous()
        else:
            del d["previous"]  # only updates carry it; other changes keep their earlier form (and digest)
        if self.redacted:
            d["redacted"] = sorted(self.redacted)
        else:
            del d["redacted"]  # plans without Redact() keep their exact earlier form (and digest)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        return cls(
            kind=ChangeKind(d["kind"]),
            cloud_id=d["cloud_id"],
            dn=d["dn"],
            display_name=d.get("display_name", ""),
            new_dn=d.get("new_dn"),
            # JSON has lists where a multi-valued attribute had a tuple
            attributes={
                k: tuple(v) if isinstance(v, list) else v for k, v in d.get("attributes", {}).items()
            },
            members=tuple(d.get("members", ())),
            reason=d.get("reason", ""),
            redacted=frozenset(d.get("redacted", ())),
            previous={k: tuple(v) if isinstance(v, list) else v for k, v in d.get("previous", {}).items()},
        )


@dataclass(frozen=True)
class GroupReport:
    """Per-group notes that are not changes: skipped members, errors, kept groups."""

    cloud_id: str
    display_name: str
    dn: str | None
    skipped: tuple[SkippedMember, ...] = ()
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cloud_id": self.cloud_id,
            "display_name": self.display_name,
            "dn": self.dn,
            "error": self.error,
            "note": self.note,
            "skipped": [asdict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupReport:
        return cls(
            d["cloud_id"],
            d["display_name"],
            d.get("dn"),
            tuple(SkippedMember(**s) for s in d.get("skipped", ())),
            d.get("error"),
            d.get("note"),
        )


@dataclass(frozen=True)
class Hold:
    """Why changes of one kind are held back (see :mod:`writeback.core.safety`)."""

    kind: str  # deletes | removals | updates
    count: int  # how many would have been applied (groups, or member values for removals)
    limit: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    reports: tuple[GroupReport, ...] = ()
    held: tuple[Change, ...] = ()  # over a safety threshold: not applied until allowed
    holds: tuple[Hold, ...] = ()
    warnings: tuple[str, ...] = ()
    # cloud id -> fingerprint of the desired state this plan converges to; stored after a successful apply so
    # the next plan can tell drift (AD edited by hand) from a change in the cloud.
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    # Which groups it compared: every managed group (deep), or a quick reconcile's changed ones; ``scope`` says
    # so in words (writeback.app.reconcile). A saved plan is checked against a fresh plan of the same depth.
    deep: bool = True
    scope: str = ""

    @property
    def drift(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.reason.startswith("drift"))

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        c = Counter(ch.kind.value for ch in self.changes)
        return {k.value: c.get(k.value, 0) for k in ChangeKind}

    def member_value_counts(self) -> dict[str, int]:
        added = sum(
            len(c.members) for c in self.changes if c.kind in (ChangeKind.CREATE, ChangeKind.ADD_MEMBERS)
        )
        removed = sum(len(c.members) for c in self.changes if c.kind is ChangeKind.REMOVE_MEMBERS)
        return {"members_added": added, "members_removed": removed}

    def digest(self) -> str:
        """Identifies the changes (not the reports): a saved plan applies only while the digest still matches."""
        body = json.dumps([c.to_dict() for c in self.changes], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "digest": self.digest(),
            "counts": self.counts(),
            **self.member_value_counts(),
            "changes": [c.to_dict() for c in self.changes],
            "held": [c.to_dict() for c in self.held],
            "holds": [h.to_dict() for h in self.holds],
            "reports": [r.to_dict() for r in self.reports],
            "warnings": list(self.warnings),
            "fingerprints": dict(self.fingerprints),
            "deep": self.deep,
            "scope": self.scope,
        }

    def with_redacted_values_from(self, current: Plan) -> Plan:
        """A saved plan ready to apply: redacted values (saved as "[redacted]") taken from ``current``.

        A saved plan never holds the values Redact() hides, and its digest covers them only as "[redacted]";
        ``current`` is the fresh plan whose digest matched (same changes in the same order), so it supplies
        them. Applying a saved plan without this would write the placeholder into AD.
        """
        if self.digest() != current.digest():
            raise ValueError("the saved plan does not match the current plan; plan again")
        changes = tuple(
            replace(saved, attributes=dict(fresh.attributes)) if saved.redacted else saved
            for saved, fresh in zip(self.changes, current.changes, strict=True)
        )
        return replace(self, changes=changes)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if d.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {d.get('format')!r} (expected {PLAN_FORMAT})")
        return cls(
            tuple(Change.from_dict(c) for c in d["changes"]),
            tuple(GroupReport.from_dict(r) for r in d.get("reports", ())),
            tuple(Change.from_dict(c) for c in d.get("held", ())),
            tuple(Hold(**h) for h in d.get("holds", ())),
            tuple(d.get("warnings", ())),
            dict(d.get("fingerprints", {})),
            bool(d.get("deep", True)),
            str(d.get("scope", "")),
        )


def desired_fingerprint(d: DesiredGroup, key: Callable[[str], str] = normalize_dn) -> str:
    """A digest of everything writeback writes for one group (DN, type, attributes, members). ``key``:
    normalize_dn, or a memo of it shared by one plan."""
    h = hashlib.sha256()
    h.update(normalize_dn(d.dn).encode())
    h.update(str(d.group_type).encode())
    h.update(json.dumps(sorted((k, v) for k, v in d.attributes.items() if v not in (None, ""))).encode())
    for m in sorted(key(m) for m in d.members):
        h.update(b"\0" + m.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Policy:
    delete_soft_deleted: bool = False
    delete_out_of_scope: bool = False
    manage_sam_account_name: bool = False  # only when sAMAccountName is mapped explicitly


# Why an existing group changes: (the cloud changed it, drift: someone edited AD by hand), indexed by drift.
_REASONS: dict[ChangeKind, tuple[str, str]] = {
    ChangeKind.UPDATE: ("attributes changed in the cloud", "drift: attributes edited in AD, reverted"),
    ChangeKind.ADD_MEMBERS: ("members added in the cloud", "drift: members removed in AD, restored"),
    ChangeKind.REMOVE_MEMBERS: ("members removed in the cloud", "drift: members added in AD, removed"),
}


def _current(a: DirectoryGroup, attribute: str) -> ChangeValue:
    """What AD holds now for an attribute an update changes."""
    if attribute == "groupType":
        return a.group_type
    if attribute == "sAMAccountName":
        return a.sam_account_name
    return a.attributes.get(attribute)


def _attr_equal(actual: AttributeValue, desired: ChangeValue) -> bool:
    if desired is None or desired == "" or desired == ():
        return actual is None or actual == "" or actual == ()
    if isinstance(desired, tuple) or isinstance(actual, tuple):
        # A multi-valued attribute: the same values in any order (AD keeps no order).
        return _values(actual) == _values(desired)
    return actual is not None and str(actual) == str(desired)


def _values(value: ChangeValue) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset(value) if isinstance(value, tuple) else frozenset({str(value)})


def member_diff(
    desired: frozenset[str],
    actual: frozenset[str],
    renamed: Mapping[str, str],
    key: Callable[[str], str] = normalize_dn,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(member DNs to add, member DNs to remove), each sorted, comparing DNs as AD does (normalised). A member
    DN in ``renamed`` (normalised old DN -> new DN) is compared at the DN it will have.

    When the two sets hold exactly the same strings and nothing is renamed, nothing changes: the common case
    of a reconcile is answered without a normalised copy of every member value (issue 17, memory)."""
    if not renamed and desired == actual:
        return (), ()
    want = {key(m): m for m in desired}
    have: dict[str, str] = {}
    for m in actual:
        k = key(m)
        new = renamed.get(k)
        have[key(new) if new else k] = new or m
    add = tuple(sorted(want[k] for k in want.keys() - have.keys()))
    remove = tuple(sorted(have[k] for k in have.keys() - want.keys()))
    return add, remove


def compute_plan(
    desired: Mapping[str, DesiredGroup],
    actual: Sequence[DirectoryGroup],
    cloud: Mapping[str, CloudGroup],
    policy: Policy,
    *,
    out_of_scope: Mapping[str, str] | None = None,
    applied: Mapping[str, str] | None = None,
    released: Sequence[DirectoryGroup] = (),
    anchor_attributes: Sequence[str] = (),
    loops: Mapping[str, str] | None = None,
    untouched: Sequence[DirectoryGroup] = (),
) -> Plan:
    """Plan the changes that make ``actual`` match ``desired``.

    - ``desired``: cloud id -> desired group (in-scope groups only).
    - ``actual``: managed AD groups (anchored) as read from the directory.
    - ``cloud``: every group the replica knows (soft-deleted ones flagged); a managed group whose cloud id is
      absent was hard-deleted.
    - ``out_of_scope``: cloud id -> reason, for groups known but not in scope.
    - ``applied``: cloud id -> fingerprint of the desired state last applied successfully. When the desired
      state is unchanged since then, any difference in AD was made by hand: it is reverted and labelled drift.
    - ``released``: managed groups whose cloud group's source of authority went back to AD (an SOA conversion
      rolled back). Writeback lets go of them: never deleted, renamed or re-membered; only the anchor it
      stamped (in ``anchor_attributes``) is removed. Kept, the anchor would make writeback treat an AD-mastered
      group as its own (a cloud delete would delete it), and an ``adminDescription`` starting with ``Group_``
      makes Entra Connect's inbound rules skip the object, so the group could never sync back to the cloud.
    - ``loops``: cloud id -> report, for synced copies of groups writeback writes (never written back).
    - ``untouched``: managed groups whose cloud group came from AD while Graph did not say who masters it now
      (onPremisesSyncBehavior unread): reported, never changed or deleted.
    An incremental cycle passes only the groups it reconciles in ``desired``, ``actual`` and ``cloud``.
    """
    out_of_scope = out_of_scope or {}
    applied = applied or {}
    # Computed once per group: drift detection below and the plan's record of what it converges to.
    # One normalised key per member DN for the whole plan: the same user DN is a member of many groups (1,000,000
    # member values of 100,000 users at the benchmark's large size), and the memo goes with the plan.
    key = functools.cache(normalize_dn)
    prints = {cid: desired_fingerprint(d, key) for cid, d in desired.items() if d.error is None}
    changes: list[Change] = []
    reports: list[GroupReport] = []
    warnings: list[str] = []

    by_id: dict[str, list[DirectoryGroup]] = {}
    for g in actual:
        if g.cloud_id:
            by_id.setdefault(g.cloud_id, []).append(g)
    current: dict[str, DirectoryGroup] = {}
    for cid, groups in by_id.items():
        if len(groups) > 1:
            dns = ", ".join(sorted(g.dn for g in groups))
            reports.append(
                GroupReport(
                    cid,
                    "",
                    None,
                    error=f"several AD groups carry anchor Group_{cid}: {dns}; "
                    "writeback will not touch them until one remains",
                )
            )
            continue
        g = groups[0]
        if g.protected:
            reports.append(
                GroupReport(
                    cid,
                    "",
                    g.dn,
                    error="AD protected group (adminCount or critical system "
                    "object); writeback never modifies it",
                )
            )
            continue
        current[cid] = g

    # Renames first, so member values can be translated to the DNs that will exist when members change.
    renamed: dict[str, str] = {}
    for cid, d in desired.items():
        a = current.get(cid)
        if a is not None and d.error is None and normalize_dn(a.dn) != normalize_dn(d.dn):
            renamed[normalize_dn(a.dn)] = d.dn

    creating = {normalize_dn(d.dn) for cid, d in desired.items() if cid not in current and d.error is None}
    # Members that do not exist yet when the creates run: they are added after the creates and renames.
    pending = creating | {normalize_dn(v) for v in renamed.values()}
    blocked_cids = {cid for cid in desired if cid in by_id and cid not in current}

    for cid in sorted(desired):
        d = desired[cid]
        shown_name = None if "displayName" in d.redacted else d.attributes.get("displayName")
        name = str(shown_name or d.cn)
        a = current.get(cid)
        if cid in blocked_cids:
            continue
        if d.error is not None:
            reports.append(GroupReport(cid, name, a.dn if a else d.dn, d.skipped, error=d.error))
            continue
        target_dn = d.dn
        if d.skipped:
            reports.append(GroupReport(cid, name, target_dn, d.skipped))
        if a is None:
            attrs: dict[str, ChangeValue] = {
                "objectClass": "group",
                "sAMAccountName": d.sam_account_name,
                "groupType": d.group_type,
            }
            attrs.update({k: v for k, v in d.attributes.items() if v not in (None, "")})
            now: list[str] = []
            later: list[str] = []
            for m in d.members:
                (later if key(m) in pending else now).append(m)
            now.sort()
            later.sort()
            changes.append(
                Change(
                    ChangeKind.CREATE,
                    cid,
                    target_dn,
                    name,
                    attributes=attrs,
                    members=tuple(now),
                    reason="new in the cloud" if cid in cloud else "in scope",
                    redacted=d.redacted & attrs.keys(),
                )
            )
            if later:
                changes.append(
                    Change(
                        ChangeKind.ADD_MEMBERS,
                        cid,
                        target_dn,
                        name,
                        members=tuple(later),
                        reason="nested groups created or renamed in this plan",
                    )
                )
            continue
        drift = cid in prints and applied.get(cid) == prints[cid]
        if normalize_dn(a.dn) != normalize_dn(target_dn):
            same_parent = normalize_dn(a.dn).split(",", 1)[1:] == normalize_dn(target_dn).split(",", 1)[1:]
            cloud_reason = "renamed in the cloud" if same_parent else "target OU changed"
            reason = "drift: renamed or moved in AD, restored" if drift else cloud_reason
            changes.append(Change(ChangeKind.MOVE, cid, a.dn, name, new_dn=target_dn, reason=reason))
        upd: dict[str, ChangeValue] = {}
        for k, v in d.attributes.items():
            if not _attr_equal(a.attributes.get(k), v):
                upd[k] = v
        if a.group_type != d.group_type:
            upd["groupType"] = d.group_type
        if policy.manage_sam_account_name and (a.sam_account_name or "") != d.sam_account_name:
            upd["sAMAccountName"] = d.sam_account_name
        if upd:
            changes.append(
                Change(
                    ChangeKind.UPDATE,
                    cid,
                    a.dn,  # updates run before renames (see ORDER)
                    name,
                    attributes=upd,
                    reason=_REASONS[ChangeKind.UPDATE][drift],
                    redacted=d.redacted & upd.keys(),
                    previous={k: _current(a, k) for k in upd},
                )
            )
        add, remove = member_diff(d.members, a.members, renamed, key)
        if add:
            changes.append(
                Change(
                    ChangeKind.ADD_MEMBERS,
                    cid,
                    target_dn,
                    name,
                    members=add,
                    reason=_REASONS[ChangeKind.ADD_MEMBERS][drift],
                )
            )
        if remove:
            changes.append(
                Change(
                    ChangeKind.REMOVE_MEMBERS,
                    cid,
                    target_dn,
                    name,
                    members=remove,
                    reason=_REASONS[ChangeKind.REMOVE_MEMBERS][drift],
                )
            )

    deletes: list[Change] = []
    for cid in sorted(current.keys() - desired.keys()):
        a = current[cid]
        c = cloud.get(cid)
        name = str(a.attributes.get("displayName") or (c.display_name if c else "") or a.dn)
        if c is None:
            deletes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason="hard-deleted in the cloud"))
        elif c.deleted:
            if policy.delete_soft_deleted:
                deletes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason="soft-deleted in the cloud"))
            else:
                reports.append(
                    GroupReport(
                        cid,
                        name,
                        a.dn,
                        note="kept: soft-deleted in the cloud (set "
                        'safety.on_soft_delete = "delete" to delete)',
                    )
                )
        else:
            reason = out_of_scope.get(cid, "out of scope")
            if policy.delete_out_of_scope:
                deletes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason=f"left scope: {reason}"))
            else:
                reports.append(GroupReport(cid, name, a.dn, note=f"kept: {reason}; no longer updated"))

    for a in released:
        if a.protected or not a.cloud_id:
            continue
        name = str(a.attributes.get("displayName") or a.dn)
        stamped = {k: None for k in anchor_attributes if a.attributes.get(k) == a.anchor}
        if stamped:
            changes.append(
                Change(
                    ChangeKind.UPDATE,
                    a.cloud_id,
                    a.dn,
                    name,
                    attributes=stamped,
                    reason="released: source of authority moved back to AD; only writeback's anchor is removed",
                )
            )
        reports.append(
            GroupReport(
                a.cloud_id, name, a.dn, note="released: its source of authority is AD again; not written"
            )
        )
    for a in untouched:
        name = str(a.attributes.get("displayName") or a.dn)
        reports.append(
            GroupReport(
                a.cloud_id or "",
                name,
                a.dn,
                note="kept unchanged: its cloud group came from AD and Graph did not say whether its source of "
                "authority is the cloud (onPremisesSyncBehavior unread; grant Group-OnPremisesSyncBehavior."
                "ReadWrite.All)",
            )
        )
    for cid, message in sorted((loops or {}).items()):
        c = cloud.get(cid)
        reports.append(GroupReport(cid, c.display_name if c else "", None, error=message))
        warnings.append(message)

    changes.extend(deletes)
    changes.sort(key=Change.sort_key)
    reports.sort(key=lambda r: (r.display_name.lower(), r.cloud_id))
    return Plan(tuple(changes), tuple(reports), warnings=tuple(warnings), fingerprints=prints)
