"""What a quick reconcile compares: the groups that changed, in the cloud or in AD, since they were last in step.

A deep reconcile reads every managed AD group with its members and compares it with the desired state; at a
million memberships that is most of a minute and a gigabyte, every hour, to find nothing. A quick reconcile
compares only the groups that may differ:

- *pending* groups: the Graph delta round that changed a group (or a user or group in it) marked it in the
  same transaction (:meth:`writeback.core.ports.ReplicaTransaction.mark_changed`); the mark is cleared when the
  group's AD group is in step;
- groups *changed in AD*: every managed group is listed with its uSNChanged (no members), and a group whose
  uSNChanged, DN or presence differs from the stamp recorded when it was last in step is compared. Every
  change of an object on a DC — a member added or removed by hand included — raises its uSNChanged (MS-ADTS
  3.1.1.1.9 "Change Tracking"; a linked value change updates the object's metadata);
- groups holding a synced user whose AD account changed since the last reconcile (uSNChanged above the
  watermark), since account moves in and out of the target base change who resolves;
- groups not in step last time (a refused change, a held change, a planning error): they have no stamp.

USNs are counters of one DC: stamps and the watermark carry the DC's invocationId and a different DC (a
failover) means a deep reconcile. So do: no stamps yet, a changed configuration, a Graph full resync, the
operator's request, and ``service.deep_reconcile_interval`` (a day by default) since the last deep one — the
net under whatever this misses (e.g. a hand edit in the seconds between writeback's write to a group and the
listing that stamps it, see :func:`stamps_after`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from writeback.config import Settings
from writeback.core.dn import normalize_dn
from writeback.core.ports import GroupStamp

Stamps = Mapping[str, tuple[str, int]]  # key -> (DN, uSNChanged) as last seen in step


@dataclass(frozen=True)
class ReconcileRecord:
    """What the last completed reconcile left for the next one to start from."""

    dc: str | None = None  # invocationId of the DC its stamps and watermark belong to
    usn: int | None = None  # the DC's highestCommittedUSN when it started (for changed AD users)
    last_deep: float | None = None  # when the last deep reconcile completed (Unix seconds)
    settings: str | None = None  # settings_print() of the configuration it planned with


def settings_print(settings: Settings) -> str:
    """A digest of the settings that decide what AD must hold: after a change every group is compared."""
    decisive = (
        settings.target,
        settings.scope,
        settings.mapping,
        settings.members,
        settings.safety,
        settings.dynamic_groups,
    )
    return hashlib.sha256(repr(decisive).encode()).hexdigest()[:32]


class DeepReason(StrEnum):
    """Why a reconcile is deep, in the words every place that shows it uses: the plan's "Compared:" line, the
    progress lines, the service log and ``--json``'s ``scope``. Defined once so the same cause never reads
    three different ways."""

    FIRST = "no deep reconcile recorded yet"
    OTHER_DC = "another domain controller answers (USNs are per DC)"
    CONFIGURATION = "the configuration changed"
    INTERVAL = "the deep reconcile interval has passed"
    NOT_IN_STEP = "no managed group recorded in step"
    NO_BASE = "no safety base recorded"
    ASKED = "an operator asked for one"  # `plan/apply --deep`, the console's Reconcile now and its plan page
    ALLOWED = "an operator allowed held changes"
    RESYNC = "a Graph full resync of the cloud replica"
    SAVED_PLAN = "the saved plan is a deep one"
    WIDER = "reading every group is cheaper than comparing the changed ones one by one"


def describe_deep(why: DeepReason, detail: str = "") -> str:
    """``deep reconcile (why)``, with a detail (counts) after the reason when there is one."""
    return f"deep reconcile ({why}: {detail})" if detail else f"deep reconcile ({why})"


def deep_reason(
    record: ReconcileRecord,
    *,
    dc: str,
    now: float,
    interval: float,
    settings: str,
    has_stamps: bool,
) -> DeepReason | None:
    """Why this reconcile must be deep, or None when a quick one is exact enough."""
    if record.last_deep is None or record.dc is None or record.usn is None:
        return DeepReason.FIRST
    if record.dc != dc:
        return DeepReason.OTHER_DC
    if record.settings != settings:
        return DeepReason.CONFIGURATION
    if now - record.last_deep >= interval:
        return DeepReason.INTERVAL
    if not has_stamps:
        return DeepReason.NOT_IN_STEP
    return None


# A quick reconcile reads each group to compare by DN (one base search each, members ranged); a deep one reads
# every managed group in one paged subtree search, which costs far fewer round trips per group. The benchmark's
# 10,000-membership change touches every group at medium; past a quarter of the groups, go deep.
QUICK_MAX_SHARE = 0.25
QUICK_ALWAYS = 50  # so few groups are always cheaper to read one by one


def wider_than_quick(to_compare: int, managed: int) -> bool:
    """Whether comparing ``to_compare`` of ``managed`` groups one by one costs more than reading them all."""
    return to_compare > QUICK_ALWAYS and to_compare > QUICK_MAX_SHARE * managed


@dataclass(frozen=True)
class ChangedInAd:
    """Managed groups that may differ from what was last seen in step, with counts by why."""

    keys: frozenset[str] = frozenset()
    why: Mapping[str, int] = field(default_factory=dict)


def changed_in_ad(stamps: Sequence[GroupStamp], recorded: Stamps) -> ChangedInAd:
    """Compare the listing with the recorded stamps: changed (uSNChanged), moved (DN), new to the record
    (created by hand with an anchor, adopted, or not in step last time), twice (two groups claim one key)
    and gone (deleted, moved out of the base, anchor removed)."""
    why: dict[str, str] = {}
    seen = Counter(s.key for s in stamps)
    for s in stamps:
        known = recorded.get(s.key)
        if seen[s.key] > 1:
            why[s.key] = "claimed by two AD groups"
        elif known is None:
            why.setdefault(s.key, "not recorded in step")
        elif normalize_dn(known[0]) != normalize_dn(s.dn):
            why.setdefault(s.key, "moved or renamed in AD")
        elif known[1] != s.usn:
            why.setdefault(s.key, "changed in AD")
    for key in recorded.keys() - seen.keys():
        why[key] = "missing from AD"
    return ChangedInAd(frozenset(why), dict(Counter(why.values())))


def stamps_after(
    converged: Iterable[str],
    written: Collection[str],
    before: Sequence[GroupStamp],
    after: Sequence[GroupStamp],
) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """The stamps of the groups now in step, and the keys to forget (in step, but no longer in AD: deleted or
    released). A group writeback wrote takes its stamp from the listing read after the writes; any other from
    the listing read before the plan (a change after that listing shows as a higher uSNChanged next time).

    A hand edit of a written group between writeback's write and the listing after it is taken as in step:
    the deep reconcile is the net for that window."""
    first = _unique(before)
    last = _unique(after)
    stamps: dict[str, tuple[str, int]] = {}
    gone: set[str] = set()
    for key in converged:
        found = (last if key in written else first).get(key)
        if found is None:
            gone.add(key)
        else:
            stamps[key] = (found.dn, found.usn)
    return stamps, gone


def _unique(stamps: Sequence[GroupStamp]) -> dict[str, GroupStamp]:
    """Stamps by key; a key two AD groups claim has none (it is never taken as in step)."""
    count = Counter(s.key for s in stamps)
    return {s.key: s for s in stamps if count[s.key] == 1}
