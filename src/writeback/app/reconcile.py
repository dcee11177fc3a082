"""The reconcile: deep (every managed group read from AD) or quick (only what changed), around one plan and apply.

The rules of which groups a quick reconcile compares are pure (:mod:`writeback.core.reconcile`); this module
reads what they need — the pending marks, the managed groups' stamps, the AD users changed since the last
reconcile — and, after the apply, records what is now in step::

    scope = begin(engine, now=time.time())          # one listing of the managed groups (no members)
    users = engine.sync_ad_users(full=scope.deep)
    plan = engine.plan(only=scope.only, dynamic=scope.plans_dynamic(users))
    result = engine.apply(plan)
    finish(engine, scope, plan, result, now=time.time())

A plan that is never applied (``writeback plan``) calls :func:`begin` only and leaves every record as it was.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from writeback.app.engine import ApplyResult, Engine
from writeback.core.dn import normalize_dn
from writeback.core.model import DYNAMIC_KEY_PREFIX
from writeback.core.planning import ChangeKind, Plan
from writeback.core.ports import GroupStamp, PendingGroups, UsnWatermark
from writeback.core.reconcile import (
    DeepReason,
    ReconcileRecord,
    changed_in_ad,
    deep_reason,
    describe_deep,
    settings_print,
    stamps_after,
    wider_than_quick,
)
from writeback.core.safety import Managed
from writeback.core.text import plural

log = logging.getLogger("writeback.reconcile")

_RECORD_KEY = "reconcile"  # meta: the ReconcileRecord as JSON
_MANAGED_KEY = "managed_base"  # meta: the safety percentages' base as the last deep reconcile counted it


@dataclass(frozen=True)
class Reconcile:
    """One reconcile's scope: deep (and why), or the keys a quick one plans (and why each)."""

    deep: bool
    why: DeepReason | None  # None: quick
    only: frozenset[str] | None  # None: every group (deep)
    pending: PendingGroups
    watermark: UsnWatermark
    before: tuple[GroupStamp, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)  # quick: candidates by why
    # Where the listing found each managed group, when the state says otherwise (key -> DN; None: gone). The
    # plan reads them there; the pass records them only once it applies (a plan leaves the state as it was).
    located: dict[str, str | None] = field(default_factory=dict)
    detail: str = ""  # deep: what the reason counted (e.g. how many groups changed of how many)

    def locations(self, applied: Mapping[str, str]) -> dict[str, str]:
        """Where each managed group is: the state's applied DNs corrected by this reconcile's listing."""
        where = {k: v for k, v in applied.items() if self.located.get(k, v) is not None}
        where.update({k: v for k, v in self.located.items() if v is not None})
        return where

    def plans_dynamic(self, users_changed: int) -> bool:
        """On-prem dynamic groups are planned when deep, when AD users changed, or one changed in AD."""
        return (
            self.deep or users_changed > 0 or any(k.startswith(DYNAMIC_KEY_PREFIX) for k in self.only or ())
        )

    def describe(self) -> str:
        if self.deep:
            return describe_deep(self.why or DeepReason.FIRST, self.detail)
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items()) if n)
        return f"quick reconcile: {plural(len(self.only or ()), 'group')} to compare" + (
            f" ({parts})" if parts else ""
        )


def load_record(engine: Engine) -> ReconcileRecord:
    raw = engine.store.get_meta(_RECORD_KEY)
    if not raw:
        return ReconcileRecord()
    data = json.loads(raw)
    return ReconcileRecord(
        dc=data.get("dc"), usn=data.get("usn"), last_deep=data.get("last_deep"), settings=data.get("settings")
    )


def stored_managed(engine: Engine) -> Managed | None:
    raw = engine.store.get_meta(_MANAGED_KEY)
    if not raw:
        return None
    data = json.loads(raw)
    return Managed(int(data["groups"]), int(data["member_values"]))


def begin(engine: Engine, *, now: float, force: DeepReason | None = None) -> Reconcile:
    """Decide deep or quick, and for a quick one which groups to compare. ``force``: a reason to go deep."""
    schema = engine.schema()
    prefixes = engine.prefixes()
    pending = engine.store.pending_groups()
    watermark, listed = engine.directory.read_group_stamps(schema.read, prefixes)
    record = load_record(engine)
    recorded = engine.store.group_stamps()
    why = force or deep_reason(
        record,
        dc=watermark.dc,
        now=now,
        interval=engine.settings.service.deep_reconcile_interval,
        settings=settings_print(engine.settings),
        has_stamps=bool(recorded) or not listed,
    )
    managed = stored_managed(engine)
    if why is not None or managed is None:
        scope = Reconcile(True, why or DeepReason.NO_BASE, None, pending, watermark, tuple(listed))
        engine.progress(scope.describe().capitalize())
        return scope
    engine.adopt_managed_base(managed)
    ad = changed_in_ad(listed, recorded)
    located = _locate(engine.store.applied_dns(), listed, ad.keys)
    counts = dict(ad.why)
    keys = set(ad.keys)
    counts["pending in the cloud"] = len(pending.groups - keys)
    keys |= pending.groups
    users = _groups_of_changed_users(engine, record)
    counts["holding changed AD users"] = len(users - keys)
    keys |= users
    if wider_than_quick(len(keys), len(listed)):
        detail = f"{len(keys)} of {len(listed)} managed groups to compare"
        scope = Reconcile(True, DeepReason.WIDER, None, pending, watermark, tuple(listed), detail=detail)
    else:
        scope = Reconcile(False, None, frozenset(keys), pending, watermark, tuple(listed), counts, located)
    engine.progress(scope.describe().capitalize())
    return scope


def _locate(
    applied_dns: Mapping[str, str], listed: Sequence[GroupStamp], compared: Collection[str]
) -> dict[str, str | None]:
    """Where every listed group is now, where the state says otherwise (the listing is complete, like a deep
    read): incremental plans read them there — a group adopted, moved by hand or created by a run killed
    before it recorded the create is renamed later, never created twice — and a compared group gone from AD
    (None) is no longer looked for."""
    applied = {k: normalize_dn(dn) for k, dn in applied_dns.items()}
    count = Counter(s.key for s in listed)
    here: dict[str, str | None] = {
        s.key: s.dn for s in listed if count[s.key] == 1 and applied.get(s.key) != normalize_dn(s.dn)
    }
    here.update({key: None for key in compared if key in applied and count[key] == 0})
    return here


def record_locations(engine: Engine, located: Mapping[str, str | None]) -> None:
    """Record where the managed groups are (None: gone from AD), as a pass that applies does."""
    for key, dn in located.items():
        if dn is None:
            engine.store.forget_applied(key)
        else:
            engine.store.record_applied(key, dn)


def _groups_of_changed_users(engine: Engine, record: ReconcileRecord) -> set[str]:
    """Cloud groups holding a synced user whose AD account changed since the last reconcile started."""
    if record.usn is None or not engine.cloud_enabled:
        return set()
    keys = engine.directory.changed_account_keys(engine.settings.target.base_dn, record.usn)
    if not keys:
        return set()
    sids = {s.upper() for s, _ in keys if s}
    guids = {g.lower() for _, g in keys if g}
    users = engine.store.cloud_users_with_keys(sids, guids)
    return engine.store.groups_with_members(users) if users else set()


def finish(engine: Engine, scope: Reconcile, plan: Plan, result: ApplyResult, *, now: float) -> None:
    """Record what is in step after ``plan`` was applied: clear its groups' pending marks, stamp them, and
    keep the watermark for the next quick reconcile. An aborted apply records nothing (the next reconcile
    compares the same groups again)."""
    if result.aborted is not None:
        return
    unsettled = _unsettled(plan, result)
    planned: set[str] = set(scope.only) if scope.only is not None else set()
    if scope.deep:
        planned |= {s.key for s in scope.before} | set(scope.pending.groups) | set(plan.fingerprints)
        planned |= {c.cloud_id for c in plan.changes}
    converged = planned - unsettled
    written = {r.change.cloud_id for r in result.results if r.ok}
    after: list[GroupStamp] = list(scope.before)
    if written:
        _, after = engine.directory.read_group_stamps(engine.schema().read, engine.prefixes())
    stamps, gone = stamps_after(converged, written, scope.before, after)
    engine.store.settle_pending(converged, scope.pending.upto)
    if scope.deep:
        engine.store.record_stamps(stamps, replace=True)
    else:
        engine.store.record_stamps(stamps)
        engine.store.forget_stamps(gone | (unsettled & planned))
    record = load_record(engine)
    settings = settings_print(engine.settings)
    new = {
        "dc": scope.watermark.dc,
        "usn": scope.watermark.usn,
        "last_deep": now if scope.deep else record.last_deep,
        "settings": settings if scope.deep else record.settings,
    }
    managed = engine.advance_managed_base([r.change for r in result.results if r.ok])
    engine.store.write_meta(
        {_RECORD_KEY: json.dumps(new), **({_MANAGED_KEY: json.dumps(asdict(managed))} if managed else {})}
    )
    log.info(
        "%s: %d groups in step, %d not",
        scope.describe(),
        len(converged),
        len(unsettled & planned),
        extra={"event": "reconcile", "deep": scope.deep},
    )


def settle(
    engine: Engine, groups: Collection[str], pending: PendingGroups, plan: Plan, result: ApplyResult
) -> None:
    """After an incremental cycle of ``groups``: clear the pending marks of those now in step, and stamp the
    ones it wrote, so the next quick reconcile does not compare again what the service itself just wrote."""
    if result.aborted is None:
        converged = set(groups) - _unsettled(plan, result)
        engine.store.settle_pending(converged, pending.upto)
        _stamp_written(engine, converged, result)
    managed = engine.advance_managed_base([r.change for r in result.results if r.ok])
    if managed is not None:
        engine.store.write_meta({_MANAGED_KEY: json.dumps(asdict(managed))})


def _stamp_written(engine: Engine, converged: Collection[str], result: ApplyResult) -> None:
    """Stamp the groups an incremental cycle wrote and compared whole (it read each from AD): base reads of
    their DNs after the writes, on the DC the last reconcile listed (USNs are per DC: on another one the next
    reconcile is deep anyway). A group deleted, or no longer at its DN, loses its stamp and is compared next
    time. As in :func:`finish`, a hand edit between the write and this read is left to the deep reconcile."""
    record = load_record(engine)
    where: dict[str, str | None] = {}
    for r in result.results:
        change, key = r.change, r.change.cloud_id
        if not r.ok or key not in converged or where.get(key, "") is None:
            continue
        if change.kind is ChangeKind.DELETE:
            where[key] = None
        elif change.new_dn or key not in where:  # a move or rename: where the group is now
            where[key] = change.new_dn or change.dn
    if not where or record.dc is None:
        return
    watermark, after = engine.directory.read_group_stamps(
        engine.schema().read, engine.prefixes(), dns=[dn for dn in where.values() if dn is not None]
    )
    if watermark.dc != record.dc:
        return
    stamps, gone = stamps_after(where, set(where), (), after)
    engine.store.record_stamps(stamps)
    engine.store.forget_stamps(gone)


def _unsettled(plan: Plan, result: ApplyResult) -> set[str]:
    """Groups not in step after ``plan``: a change refused or held, or the group could not be planned."""
    found = {r.change.cloud_id for r in result.failed} | {c.cloud_id for c in plan.held}
    return found | {r.cloud_id for r in plan.reports if r.error}
