"""Which per-group notes go into the provisioning log: each one once, when it changes. Pure.

A plan reports, per group, the members it does not write to AD (with the reason) and the error that keeps a
group from being written at all. The service plans the same groups every few seconds; logging those notes at
every cycle buried the log's real changes under copies of the same row (22 of 56 rows after a short session,
issue 22). A note is logged when the group's note differs from the last one logged: new, or a different set
of skipped members or error. The state keeps a digest per group (:data:`SEEN_KEY` in the meta table).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from writeback.core.planning import GroupReport

SEEN_KEY = "logged_reports"  # meta: {cloud id: digest of the note last logged}
LOGGED_SKIPPED = 100  # skipped members named in one log row; the count is always there


def note_digest(report: GroupReport) -> str:
    """A digest of what the log says of ``report``: its error and its skipped members with their reasons."""
    data = [report.error, sorted([s.member_id, s.reason] for s in report.skipped)]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NotesToLog:
    reports: tuple[GroupReport, ...]  # the notes to log now
    seen: dict[str, str]  # the digests to keep for the next plan


def notes_to_log(reports: Sequence[GroupReport], seen: Mapping[str, str], *, complete: bool) -> NotesToLog:
    """The reports of ``reports`` whose note changed since ``seen``. ``complete``: the plan compared every
    group (a deep reconcile), so a group with no note now has none to remember either; a partial plan
    keeps what it did not see."""
    now = {r.cloud_id: note_digest(r) for r in reports if r.error or r.skipped}
    changed = tuple(r for r in reports if r.cloud_id in now and seen.get(r.cloud_id) != now[r.cloud_id])
    planned = {r.cloud_id for r in reports}
    kept = {} if complete else {k: v for k, v in seen.items() if k not in planned}
    return NotesToLog(changed, {**kept, **now})


def skipped_detail(report: GroupReport) -> dict[str, object]:
    """The log row's detail for a group's skipped members: each named (id and name) with its reason, and
    (``of``) the group's member count when the plan knew how many it writes."""
    total = {"of": report.matched + len(report.skipped)} if report.matched is not None else {}
    return {
        **total,
        "skipped": len(report.skipped),
        "reasons": dict(Counter(s.reason for s in report.skipped)),
        "members": [
            {"id": s.member_id, "name": s.name or None, "kind": s.kind, "reason": s.reason}
            for s in sorted(report.skipped)[:LOGGED_SKIPPED]
        ],
    }
