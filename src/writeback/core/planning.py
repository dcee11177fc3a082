"""Compute the plan: the ordered LDAP-level changes that make AD match the desired state. Pure.

``compute_plan`` takes the desired state (:class:`~writeback.core.desired.DesiredState`: desired groups, the
managed AD groups as read, what the cloud says about groups that are no longer desired) and returns a
:class:`Plan`. It reads nothing, writes nothing and looks at no clock, so every product rule here is
unit-tested without a directory. It only diffs: every per-group error (several AD groups carrying one anchor,
a protected group, a group that cannot be written) is decided by the desired state, and reported here as is.
Each kind of change is made by one small step; ``compute_plan`` puts them in order.

Ownership: only groups carrying writeback's anchor (``Group_<objectId>``, ``WritebackDynamic_<id>``) are ever
changed or deleted; protected groups (:mod:`writeback.core.protected`) are reported and left alone; a
create whose DN is held by an object writeback does not own is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from writeback.core.desired import (
    UF_ACCOUNTDISABLE,
    UF_NORMAL_ACCOUNT,
    UF_SMARTCARD_REQUIRED,
    DesiredState,
)
from writeback.core.dn import normalize_dn
from writeback.core.model import (
    TARGET_GROUP,
    TARGET_USER,
    AttributeValue,
    DesiredGroup,
    DesiredUser,
    DirectoryGroup,
    DirectoryUser,
    SkippedMember,
)

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

    @property
    def action(self) -> str:
        """The provisioning log's action for a change of this kind (see :data:`writeback.core.journal.LOG_ACTIONS`).

        The kind's own value: a plan, its JSON and the log name a change the same way."""
        return str(self.value)


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
    # What the change is made to: a group, or a user account (``cloud_id`` is then the cloud user's id).
    target: str = TARGET_GROUP

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
        if self.target == TARGET_GROUP:
            del d["target"]  # a group's change keeps its earlier form (and a plan of groups its digest)
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
            target=str(d.get("target", TARGET_GROUP)),
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
    target: str = TARGET_GROUP  # a group, or a user account (see Change.target)
    # Of a group with skipped members: how many of its members are written (the log's "3 of 4 members
    # matched"); None when not known (a saved plan's report). Not in the plan's JSON.
    matched: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "cloud_id": self.cloud_id,
            "display_name": self.display_name,
            "dn": self.dn,
            "error": self.error,
            "note": self.note,
            "skipped": [asdict(s) for s in self.skipped],
        }
        if self.target != TARGET_GROUP:
            d["target"] = self.target
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupReport:
        return cls(
            d["cloud_id"],
            d["display_name"],
            d.get("dn"),
            tuple(SkippedMember(**s) for s in d.get("skipped", ())),
            d.get("error"),
            d.get("note"),
            str(d.get("target", TARGET_GROUP)),
        )


@dataclass(frozen=True)
class Hold:
    """Why changes of one kind are held back (see :mod:`writeback.core.safety`)."""

    kind: str  # deletes | removals | updates | rights (writeback.core.rights)
    count: int  # how many would have been applied (groups, or member values for removals)
    limit: int
    message: str
    groups: tuple[str, ...] = ()  # the keys of the groups held, when the hold is about them (rights)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.groups:
            d["groups"] = list(self.groups)
        else:
            del d["groups"]  # threshold holds keep their earlier form
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Hold:
        return cls(d["kind"], d["count"], d["limit"], d["message"], tuple(d.get("groups", ())))


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

    @property
    def user_changes(self) -> tuple[Change, ...]:
        """The changes made to user accounts (``[users]``), applied and held."""
        return tuple(c for c in (*self.changes, *self.held) if c.target == TARGET_USER)

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
            tuple(Hold.from_dict(h) for h in d.get("holds", ())),
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
    if d.members:  # each member as b"\0" + its key, in one update (the same bytes as one update per member)
        h.update(("\0" + "\0".join(sorted(key(m) for m in d.members))).encode())
    return h.hexdigest()


def user_fingerprint(d: DesiredUser) -> str:
    """A digest of everything writeback writes on one user account (its DN and mapped attributes)."""
    h = hashlib.sha256(b"user\0")
    h.update(normalize_dn(d.dn).encode())
    h.update(json.dumps(sorted((k, v) for k, v in d.attributes.items() if v not in (None, ""))).encode())
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


def compute_plan(state: DesiredState, policy: Policy, applied: Mapping[str, str] | None = None) -> Plan:
    """Plan the changes that make the managed AD groups (``state.actual``) match the desired ones. Pure.

    ``state`` is everything the plan compares (see :class:`~writeback.core.desired.DesiredState`): the desired
    groups (in-scope only, each with its error or skipped members), the managed AD groups as read (one per
    key), what the cloud says of the groups no longer desired, and the groups to release, leave untouched or
    report as loops. ``applied``: key -> fingerprint of the desired state last applied successfully; when it is
    unchanged since then, any difference in AD was made by hand and is reverted as drift.

    Each step below makes the changes of one kind (or the reports of one concern) from the same shared
    :class:`_Diff`; this function only puts them in order. An incremental cycle passes only the groups it
    reconciles.
    """
    diff = _Diff.of(state, policy, applied or {})
    parts = [step(diff) for step in _STEPS]
    changes = sorted((c for p in parts for c in p.changes), key=Change.sort_key)
    reports = sorted(
        (r for p in parts for r in p.reports), key=lambda r: (r.display_name.lower(), r.cloud_id)
    )
    warnings = tuple(w for p in parts for w in p.warnings)
    return Plan(tuple(changes), tuple(reports), warnings=warnings, fingerprints=diff.fingerprints)


@dataclass(frozen=True)
class _Part:
    """What one step of a plan contributes."""

    changes: Sequence[Change] = ()
    reports: Sequence[GroupReport] = ()
    warnings: Sequence[str] = ()


@dataclass(frozen=True)
class _Diff:
    """What every step of one plan shares, worked out once from its inputs."""

    state: DesiredState
    policy: Policy
    applied: Mapping[str, str]
    # One normalised key per member DN for the whole plan: the same user DN is a member of many groups
    # (1,000,000 member values of 100,000 users at the benchmark's large size), and the memo goes with the plan.
    key: Callable[[str], str]
    current: Mapping[str, DirectoryGroup]  # key -> its managed AD group
    writable: Mapping[str, DesiredGroup]  # desired groups without an error, in key order
    # Normalised current DN -> new DN of the groups this plan renames or moves: member values are compared
    # at the DNs that exist when members change.
    renamed: Mapping[str, str]
    # Normalised DNs that exist only once this plan's creates and renames ran: members a create cannot hold.
    pending: frozenset[str]
    # key -> (members to add, members to remove) of each existing group whose members change.
    members: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
    # key -> fingerprint of its desired state: drift detection and the plan's record of what it converges to.
    fingerprints: Mapping[str, str]

    @classmethod
    def of(cls, state: DesiredState, policy: Policy, applied: Mapping[str, str]) -> _Diff:
        current = {g.cloud_id: g for g in state.actual if g.cloud_id}
        if len(current) != sum(1 for g in state.actual if g.cloud_id):
            # desired_state reports such groups and leaves them out; planning never picks one of them.
            raise ValueError("several AD groups of one key in the plan's actual groups: pass a desired_state")
        key = functools.cache(normalize_dn)
        writable = {cid: state.groups[cid] for cid in sorted(state.groups) if state.groups[cid].error is None}
        renamed = {
            key(a.dn): d.dn
            for cid, d in writable.items()
            if (a := current.get(cid)) is not None and key(a.dn) != key(d.dn)
        }
        creating = {key(d.dn) for cid, d in writable.items() if cid not in current}
        # Accounts writeback creates or renames in this plan (cloud_members): a group's add cannot hold them;
        # they are added to it once they exist, and member values are compared at their new DNs.
        for uid, u in state.users.items():
            if not u.create or u.error is not None or not u.dn:
                continue
            held = state.user_actual.get(uid)
            if held is None:
                creating.add(key(u.dn))
            elif key(held.dn) != key(u.dn):
                renamed[key(held.dn)] = u.dn
        members: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for cid, d in writable.items():
            if (a := current.get(cid)) is not None:
                add, remove = member_diff(d.members, a.members, renamed, key)
                if add or remove:
                    members[cid] = (add, remove)
        return cls(
            state,
            policy,
            applied,
            key,
            current,
            writable,
            renamed,
            frozenset(creating | {key(v) for v in renamed.values()}),
            members,
            {
                **{cid: desired_fingerprint(d, key) for cid, d in writable.items()},
                **{
                    k: user_fingerprint(d)
                    for k, d in state.users.items()
                    if k in state.user_actual or (d.create and d.error is None and d.dn)
                },
            },
        )

    def new(self) -> Iterator[tuple[str, DesiredGroup]]:
        """The desired groups AD does not hold yet."""
        return ((cid, d) for cid, d in self.writable.items() if cid not in self.current)

    def existing(self) -> Iterator[tuple[str, DesiredGroup, DirectoryGroup]]:
        """The desired groups AD holds, with their managed AD group."""
        return ((cid, d, a) for cid, d in self.writable.items() if (a := self.current.get(cid)) is not None)

    def drift(self, cid: str) -> bool:
        """True when the desired state is the one last applied: a difference in AD was made by hand."""
        return cid in self.fingerprints and self.applied.get(cid) == self.fingerprints[cid]


def _shown_name(d: DesiredGroup) -> str:
    """A desired group's name in plans and logs: its display name unless Redact() hides it, else its CN."""
    shown = None if "displayName" in d.redacted else d.attributes.get("displayName")
    return str(shown or d.cn)


def _group_reports(diff: _Diff) -> _Part:
    """Groups the plan leaves alone (with the error desired_state found) and members it does not write."""
    reports = [GroupReport(e.key, e.name, e.dn, error=e.message) for e in diff.state.errors]
    for cid in sorted(diff.state.groups):
        d = diff.state.groups[cid]
        if d.error is not None:
            a = diff.current.get(cid)
            reports.append(GroupReport(cid, _shown_name(d), a.dn if a else d.dn, d.skipped, error=d.error))
        elif d.skipped:
            reports.append(GroupReport(cid, _shown_name(d), d.dn, d.skipped, matched=len(d.members)))
    return _Part(reports=reports)


def _creates(diff: _Diff) -> _Part:
    """One create per new group, with every member that exists when creates run (the rest: :func:`_member_adds`)."""
    changes: list[Change] = []
    for cid, d in diff.new():
        attrs: dict[str, ChangeValue] = {
            "objectClass": "group",
            "sAMAccountName": d.sam_account_name,
            "groupType": d.group_type,
        }
        attrs.update({k: v for k, v in d.attributes.items() if v not in (None, "")})
        changes.append(
            Change(
                ChangeKind.CREATE,
                cid,
                d.dn,
                _shown_name(d),
                attributes=attrs,
                members=tuple(sorted(_exist_now(diff, d.members))),
                reason="new in the cloud" if cid in diff.state.cloud else "in scope",
                redacted=d.redacted & attrs.keys(),
            )
        )
    return _Part(changes)


def _exist_now(diff: _Diff, members: frozenset[str]) -> Iterable[str]:
    """The member DNs that exist when creates run: all of them unless this plan creates or renames some
    (then only those are normalised and looked up; a big group's members are not, issue 27)."""
    if not diff.pending:
        return members
    return (m for m in members if diff.key(m) not in diff.pending)


def _updates(diff: _Diff) -> _Part:
    """Attribute updates of existing groups, at their current DN (updates run before renames, see ORDER)."""
    changes: list[Change] = []
    for cid, d, a in diff.existing():
        upd: dict[str, ChangeValue] = {
            k: v for k, v in d.attributes.items() if not _attr_equal(a.attributes.get(k), v)
        }
        if a.group_type != d.group_type:
            upd["groupType"] = d.group_type
        if diff.policy.manage_sam_account_name and (a.sam_account_name or "") != d.sam_account_name:
            upd["sAMAccountName"] = d.sam_account_name
        if upd:
            changes.append(
                Change(
                    ChangeKind.UPDATE,
                    cid,
                    a.dn,
                    _shown_name(d),
                    attributes=upd,
                    reason=_REASONS[ChangeKind.UPDATE][diff.drift(cid)],
                    redacted=d.redacted & upd.keys(),
                    previous={k: _current(a, k) for k in upd},
                )
            )
    return _Part(changes)


def _moves(diff: _Diff) -> _Part:
    """Renames and moves of existing groups whose DN changes."""
    changes: list[Change] = []
    for cid, d, a in diff.existing():
        old, new = diff.key(a.dn), diff.key(d.dn)
        if old == new:
            continue
        same_parent = old.split(",", 1)[1:] == new.split(",", 1)[1:]
        cloud_reason = "renamed in the cloud" if same_parent else "target OU changed"
        reason = "drift: renamed or moved in AD, restored" if diff.drift(cid) else cloud_reason
        changes.append(Change(ChangeKind.MOVE, cid, a.dn, _shown_name(d), new_dn=d.dn, reason=reason))
    return _Part(changes)


def _member_adds(diff: _Diff) -> _Part:
    """Members to add, at the group's new DN: a new group's members that do not exist when creates run (nested
    groups created or renamed in this plan), and an existing group's missing members."""
    changes: list[Change] = []
    for cid, d in diff.new():
        later = tuple(sorted(m for m in d.members if diff.key(m) in diff.pending)) if diff.pending else ()
        if later:
            changes.append(
                Change(
                    ChangeKind.ADD_MEMBERS,
                    cid,
                    d.dn,
                    _shown_name(d),
                    members=later,
                    reason="nested groups created or renamed in this plan",
                )
            )
    changes.extend(_member_diff(diff, ChangeKind.ADD_MEMBERS))
    return _Part(changes)


def _member_removals(diff: _Diff) -> _Part:
    """Members to remove from existing groups, at the group's new DN."""
    return _Part(_member_diff(diff, ChangeKind.REMOVE_MEMBERS))


def _member_diff(diff: _Diff, kind: ChangeKind) -> list[Change]:
    """One change of ``kind`` (member adds or removals) per existing group whose members differ that way."""
    side = 0 if kind is ChangeKind.ADD_MEMBERS else 1
    changes: list[Change] = []
    for cid, d, _a in diff.existing():
        values = diff.members.get(cid, ((), ()))[side]
        if values:
            reason = _REASONS[kind][diff.drift(cid)]
            changes.append(Change(kind, cid, d.dn, _shown_name(d), members=values, reason=reason))
    return changes


def _deletes(diff: _Diff) -> _Part:
    """Managed groups no longer desired: deleted when the cloud deleted them (or the policy says so), else kept
    and reported."""
    changes: list[Change] = []
    reports: list[GroupReport] = []
    policy = diff.policy
    for cid in sorted(diff.current.keys() - diff.state.groups.keys()):
        a = diff.current[cid]
        c = diff.state.cloud.get(cid)
        name = str(a.attributes.get("displayName") or (c.display_name if c else "") or a.dn)
        if c is None:
            changes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason="hard-deleted in the cloud"))
        elif c.deleted and policy.delete_soft_deleted:
            changes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason="soft-deleted in the cloud"))
        elif c.deleted:
            note = 'kept: soft-deleted in the cloud (set safety.on_soft_delete = "delete" to delete)'
            reports.append(GroupReport(cid, name, a.dn, note=note))
        else:
            reason = diff.state.out_of_scope.get(cid, "out of scope")
            if policy.delete_out_of_scope:
                changes.append(Change(ChangeKind.DELETE, cid, a.dn, name, reason=f"left scope: {reason}"))
            else:
                reports.append(GroupReport(cid, name, a.dn, note=f"kept: {reason}; no longer updated"))
    return _Part(changes, reports)


def _releases(diff: _Diff) -> _Part:
    """Managed groups whose cloud group's source of authority went back to AD (an SOA conversion rolled back).

    Writeback lets go of them: never deleted, renamed or re-membered; only the anchor it stamped (in
    ``state.anchor_attributes``) is removed. Kept, the anchor would make writeback treat an AD-mastered group
    as its own (a cloud delete would delete it), and an ``adminDescription`` starting with ``Group_`` makes
    Entra Connect's inbound rules skip the object, so the group could never sync back to the cloud."""
    changes: list[Change] = []
    reports: list[GroupReport] = []
    for a in diff.state.released:
        cid = a.cloud_id or ""
        name = str(a.attributes.get("displayName") or a.dn)
        stamped = {k: None for k in diff.state.anchor_attributes if a.attributes.get(k) == a.anchor}
        if stamped:
            reason = "released: source of authority moved back to AD; only writeback's anchor is removed"
            changes.append(Change(ChangeKind.UPDATE, cid, a.dn, name, attributes=stamped, reason=reason))
        note = "released: its source of authority is AD again; not written"
        reports.append(GroupReport(cid, name, a.dn, note=note))
    return _Part(changes, reports)


def _untouched(diff: _Diff) -> _Part:
    """Managed groups whose cloud group came from AD while Graph did not say who masters it now: reported,
    never changed or deleted."""
    note = (
        "kept unchanged: its cloud group came from AD and Graph did not say whether its source of "
        "authority is the cloud (onPremisesSyncBehavior unread; grant Group-OnPremisesSyncBehavior."
        "ReadWrite.All)"
    )
    reports = [
        GroupReport(a.cloud_id or "", str(a.attributes.get("displayName") or a.dn), a.dn, note=note)
        for a in diff.state.untouched
    ]
    return _Part(reports=reports)


def _loops(diff: _Diff) -> _Part:
    """Synced copies of groups writeback writes (never written back): an error and a warning each."""
    reports: list[GroupReport] = []
    warnings: list[str] = []
    for cid, message in sorted(diff.state.loops.items()):
        c = diff.state.cloud.get(cid)
        reports.append(GroupReport(cid, c.display_name if c else "", None, error=message))
        warnings.append(message)
    return _Part(reports=reports, warnings=warnings)


def _shown_user(d: DesiredUser) -> str:
    """A desired user's name in plans and logs: its mapped display name unless Redact() hides it."""
    shown = None if "displayName" in d.redacted else d.attributes.get("displayName")
    return str(shown or d.name)


def _user_updates(diff: _Diff) -> _Part:
    """Users (``[users] provision = "soa"``): the mapped attributes and the anchor written into each SOA user's
    original AD account, at the DN it has (an account is never moved, renamed, created or deleted); errors
    reported. One UPDATE per account, like a group's attribute update."""
    changes: list[Change] = []
    reports: list[GroupReport] = []
    state = diff.state
    for key in sorted(state.users):
        d = state.users[key]
        a = state.user_actual.get(key)
        if d.create and d.error is None:
            changes.extend(_member_account(diff, d, a))
            continue
        if d.error is not None or a is None:
            reports.append(GroupReport(key, d.name, d.dn or None, error=d.error, target=TARGET_USER))
            continue
        upd = {k: v for k, v in d.attributes.items() if not _attr_equal(a.attributes.get(k), v)}
        if not upd:
            continue
        taking = a.anchor is None
        reason = (
            "cloud-managed user (SOA): its original AD account is taken over"
            if taking
            else _REASONS[ChangeKind.UPDATE][diff.drift(key)]
        )
        changes.append(
            Change(
                ChangeKind.UPDATE,
                key,
                a.dn,
                _shown_user(d),
                attributes=upd,
                reason=reason,
                redacted=d.redacted & upd.keys(),
                previous={k: a.attributes.get(k) for k in upd},
                target=TARGET_USER,
            )
        )
    return _Part(changes, reports)


# The classes of an account writeback creates (AD's default for New-ADUser).
USER_OBJECT_CLASSES = ("top", "person", "organizationalPerson", "user")


def user_account_control(current: int, enabled: bool | None) -> int:
    """``current`` with ACCOUNTDISABLE set (``enabled`` False) or cleared (True); None leaves it as it is."""
    if enabled is None:
        return current
    return current & ~UF_ACCOUNTDISABLE if enabled else current | UF_ACCOUNTDISABLE


def _member_account(diff: _Diff, d: DesiredUser, a: DirectoryUser | None) -> list[Change]:
    """The account of a cloud-only member (cloud_members): created when no account carries its anchor, else
    updated in place (mapped attributes, adminDescription, the ACCOUNTDISABLE bit) and renamed to its CN.
    The password is not in the plan: the directory adapter generates it in the add (see
    :meth:`writeback.core.ports.Directory.create_user`)."""
    name = _shown_user(d)
    if a is None:
        uac = UF_NORMAL_ACCOUNT | (0 if d.enabled is not False else UF_ACCOUNTDISABLE)
        if d.smart_card:
            uac |= UF_SMARTCARD_REQUIRED
        attrs: dict[str, ChangeValue] = {
            "objectClass": USER_OBJECT_CLASSES,
            "sAMAccountName": d.sam_account_name,
            "userPrincipalName": d.user_principal_name,
            "userAccountControl": str(uac),
        }
        attrs.update((k, v) for k, v in d.attributes.items() if v not in (None, ""))
        reason = (
            f"cloud-only member: new AD account {d.sam_account_name} ({d.user_principal_name}); a random "
            "password is set in the add over TLS and never kept"
        )
        return [
            Change(
                ChangeKind.CREATE,
                d.cloud_id,
                d.dn,
                name,
                attributes=attrs,
                reason=reason,
                redacted=d.redacted & attrs.keys(),
                target=TARGET_USER,
            )
        ]
    changes: list[Change] = []
    upd: dict[str, ChangeValue] = {
        k: v for k, v in d.attributes.items() if not _attr_equal(a.attributes.get(k), v)
    }
    current = a.attributes.get("userAccountControl")
    if d.enabled is not None and isinstance(current, str | int) and str(current).isdigit():
        wanted = user_account_control(int(current), d.enabled)
        if wanted != int(current):
            upd["userAccountControl"] = str(wanted)
    if upd:
        if "userAccountControl" in upd and len(upd) == 1:
            reason = "account enabled: its user is back" if d.enabled else f"account disabled: {d.name}"
        else:
            reason = _REASONS[ChangeKind.UPDATE][diff.drift(d.cloud_id)]
        changes.append(
            Change(
                ChangeKind.UPDATE,
                d.cloud_id,
                a.dn,
                name,
                attributes=upd,
                reason=reason,
                redacted=d.redacted & upd.keys(),
                previous={k: a.attributes.get(k) for k in upd},
                target=TARGET_USER,
            )
        )
    if diff.key(a.dn) != diff.key(d.dn):
        changes.append(
            Change(
                ChangeKind.MOVE,
                d.cloud_id,
                a.dn,
                name,
                new_dn=d.dn,
                reason="renamed in the cloud: CN follows the display name",
                target=TARGET_USER,
            )
        )
    return changes


def _user_deletes(diff: _Diff) -> _Part:
    """Accounts writeback created that are deleted (hard delete, or ``on_leave = "delete"``): held over the
    delete threshold like any delete."""
    changes = [
        Change(
            ChangeKind.DELETE,
            a.cloud_id or "",
            a.dn,
            str(a.attributes.get("displayName") or a.dn),
            reason=why,
            target=TARGET_USER,
        )
        for a, why in diff.state.users_deleted
    ]
    return _Part(changes)


def _user_releases(diff: _Diff) -> _Part:
    """User accounts whose cloud user AD masters again (a user SOA rolled back): only the anchor writeback
    stamps is removed, as for groups (:func:`_releases`); and the managed accounts kept as they are."""
    changes: list[Change] = []
    reports: list[GroupReport] = []
    for a in diff.state.users_released:
        cid = a.cloud_id or ""
        name = str(a.attributes.get("displayName") or a.dn)
        stamped = {k: None for k in diff.state.user_anchor_attributes if a.attributes.get(k) == a.anchor}
        if stamped:
            reason = "released: source of authority moved back to AD; only writeback's anchor is removed"
            changes.append(
                Change(
                    ChangeKind.UPDATE, cid, a.dn, name, attributes=stamped, reason=reason, target=TARGET_USER
                )
            )
        note = "released: its source of authority is AD again; not written"
        reports.append(GroupReport(cid, name, a.dn, note=note, target=TARGET_USER))
    for a, note in diff.state.users_kept:
        name = str(a.attributes.get("displayName") or a.dn)
        reports.append(GroupReport(a.cloud_id or "", name, a.dn, note=note, target=TARGET_USER))
    return _Part(changes, reports)


# The steps of a plan. Their order decides only the order of reports that tie (changes are sorted by ORDER).
_STEPS: tuple[Callable[[_Diff], _Part], ...] = (
    _group_reports,
    _creates,
    _updates,
    _moves,
    _member_adds,
    _member_removals,
    _deletes,
    _releases,
    _untouched,
    _loops,
    _user_updates,
    _user_releases,
    _user_deletes,
)
