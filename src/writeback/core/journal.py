"""The provisioning log's vocabulary: every action and every result a log row can have. Pure.

One place, so the CLI (``writeback log --action/--result``) and the console can refuse a value no row can
have, instead of answering "No log entries." A change's action is its kind's (:attr:`ChangeKind.action`), so a
plan, its JSON and the log name a change the same way.
"""

from __future__ import annotations

from writeback.core.planning import ChangeKind
from writeback.core.ports import INTERRUPTED, LOG_RESULTS, PENDING

# The actions of the changes a plan makes: create, update, move, add_members, remove_members, delete.
CHANGE_ACTIONS: tuple[str, ...] = tuple(k.action for k in ChangeKind)
# What a plan does not change: a group not written (skip) or some of its members not written (skip_members),
# a change held by a safety threshold (held; a held delete is staged_delete).
REPORT_ACTIONS = ("skip", "skip_members", "held", "staged_delete")
# What an operator does: allow held changes, reconcile now, clear a quarantine, provision one group on demand,
# rebuild the cloud replica (`writeback state rebuild-replica`), pause and resume writing to AD, restart
# provisioning (the replica read again in full, then a deep reconcile).
OPERATOR_ACTIONS = (
    "allow",
    "reconcile",
    "clear_quarantine",
    "provision",
    "rebuild_replica",
    "pause",
    "resume",
    "restart",
)
LOG_ACTIONS: tuple[str, ...] = (*CHANGE_ACTIONS, *REPORT_ACTIONS, *OPERATOR_ACTIONS)

__all__ = [
    "CHANGE_ACTIONS",
    "INTERRUPTED",
    "LOG_ACTIONS",
    "LOG_RESULTS",
    "OPERATOR_ACTIONS",
    "PENDING",
    "REPORT_ACTIONS",
]
