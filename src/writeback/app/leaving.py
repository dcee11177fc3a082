"""Leaving every group, decided in every pass: the replica's answer to a partial plan's question.

A quick reconcile, an incremental cycle or provision on demand of a group reads only the groups it plans. When a
user whose account writeback created leaves such a group, whether it left *every* in-scope group cannot be known
from those groups; it is known from the cloud replica, which holds every group's members. So after the one
gathering step the engine asks the replica about the accounts :func:`writeback.core.desired.leaving_users`
names, and the pure :func:`writeback.core.desired.with_replica_memberships` decides with that complete
knowledge: a user still in some in-scope group keeps its account; the others leave (``[users] on_leave``, or a
delete behind the delete threshold when the user was hard-deleted), exactly as a deep plan decides.

Such a decision is made while the account is still a member value of the group the user left; the same apply
removes that value. A leave held by a safety threshold (or refused) would then never be seen again by a partial
plan, so the users of held or failed account changes are kept in the state (:data:`PENDING_KEY`) and asked about
again by every later pass until one applies (or no longer needs) their change.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable

from writeback.config import Settings, UserSettings
from writeback.core.desired import DirectoryFacts, Intents, leaving_users, with_replica_memberships
from writeback.core.model import TARGET_USER, CloudUser
from writeback.core.planning import Change, Plan
from writeback.core.ports import AllowanceStore, Store

PENDING_KEY = "users_leaving"  # meta: ids of users whose account change was held or failed (JSON list)


def pending(store: AllowanceStore) -> frozenset[str]:
    """The users whose held or failed account change every pass asks the replica about again."""
    raw = store.get_meta(PENDING_KEY)
    return frozenset(json.loads(raw)) if raw else frozenset()


def may_leave(store: Store, settings: UserSettings, user: CloudUser | None, user_id: str) -> bool:
    """Whether provision on demand of ``user`` (None: ``user_id`` is not in the replica), which no in-scope
    group holds, decides its account's leave as every pass does: with ``[users] provision = "cloud_members"``,
    a cloud-only user (or one gone from the replica) whose account writeback wrote (its fingerprint is
    recorded; a group's id has an applied DN besides). The plan then finds the account by its anchor, and
    :func:`writeback.core.desired.leaving_users` takes only an account writeback created."""
    if not settings.creates_accounts or (user is not None and user.is_synced):
        return False
    return user_id in store.applied_fingerprints() and user_id not in store.applied_dns()


def ask_replica(
    intents: Intents, facts: DirectoryFacts, store: Store, settings: Settings, also: Collection[str] = ()
) -> Intents:
    """``intents`` with the users a partial plan may see leave decided from the whole replica (unchanged for
    a full plan, or when no account writeback created is concerned). ``also``: users asked about besides the
    pending ones (provision on demand of a user no in-scope group holds any more)."""
    asked = leaving_users(intents, facts, pending(store) | frozenset(also))
    if not asked:
        return intents
    return with_replica_memberships(
        intents, settings.users, asked, store.users_by_id(asked), store.groups_of_members(asked)
    )


def record_unsettled(store: AllowanceStore, plan: Plan, applied: Iterable[Change], *, aborted: bool) -> None:
    """After an apply: the users of account changes ``plan`` held or that were not ``applied`` are asked about
    again by the next pass; every other one was decided and written (or needs nothing) and is forgotten. An
    aborted apply keeps the ones recorded before too (it decided nothing for certain)."""
    done = {(c.kind, c.cloud_id, c.dn) for c in applied if c.target == TARGET_USER}
    users = {c.cloud_id for c in plan.held if c.target == TARGET_USER}
    users |= {
        c.cloud_id for c in plan.changes if c.target == TARGET_USER and (c.kind, c.cloud_id, c.dn) not in done
    }
    if aborted:
        users |= pending(store)
    raw = json.dumps(sorted(u for u in users if u)) if users else None
    if raw != store.get_meta(PENDING_KEY):
        store.write_meta({PENDING_KEY: raw})
