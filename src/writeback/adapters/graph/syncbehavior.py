"""Group Source of Authority: read ``onPremisesSyncBehavior`` (beta) for groups that came from AD.

``GET /beta/groups/{id}/onPremisesSyncBehavior`` answers ``{"isCloudManaged": bool}``: true once the group's
source of authority moved to the cloud, false when it is AD's (never converted, or rolled back)
(https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get?view=graph-rest-beta; permission
Group-OnPremisesSyncBehavior.ReadWrite.All, the only one the page lists). It is a relationship, not a property:
group delta does not return it, and a rollback (isCloudManaged true -> false, onPremisesSyncEnabled staying
null) may change nothing delta reports. So it is read per group, for the groups that carry
``onPremisesSecurityIdentifier`` and are not synced now: those a delta round changed, and all of them on the
first sync of a process and every ``refresh_every`` seconds after.

``isCloudManaged`` is a Boolean (https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior
?view=graph-rest-beta). Any other type is a malformed answer: the replica keeps the last value it read, and the
group is reported in :attr:`skipped` like any malformed Graph object (issue 23, finding 9).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection

from writeback.adapters.graph.client import GraphClient
from writeback.adapters.graph.validate import kind_of
from writeback.core.model import CloudGroup
from writeback.core.ports import ReplicaStore, SkippedObject
from writeback.errors import AuthenticationError, SourceError, ThrottledError

log = logging.getLogger("writeback.graph")

REFRESH_EVERY = 600.0  # seconds between reads of every converted group's behaviour (rollbacks)


def asks_behavior(group: CloudGroup) -> bool:
    """Groups whose source of authority only onPremisesSyncBehavior can tell: they came from AD (a SID) and
    are not synced now (onPremisesSyncEnabled is null or false after a conversion)."""
    return (
        bool(group.on_premises_security_identifier)
        and not group.on_premises_sync_enabled
        and not group.deleted
    )


class SyncBehaviorReader:
    """Keeps ``CloudGroup.is_cloud_managed`` in the replica current for groups that came from AD."""

    def __init__(
        self,
        client: GraphClient,
        *,
        refresh_every: float = REFRESH_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.refresh_every, self.clock = client, refresh_every, clock
        self._last_full: float | None = None
        self._denied = False
        self.skipped: list[SkippedObject] = []  # the malformed answers of the last refresh

    def refresh(self, replica: ReplicaStore, changed: Collection[str]) -> set[str]:
        """Read the behaviour of the groups that need it; returns the ids whose isCloudManaged changed (an
        incremental plan must reconcile them: a conversion or a rollback)."""
        self.skipped = []
        now = self.clock()
        every = self._last_full is None or now - self._last_full >= self.refresh_every
        if not every and not changed:
            return set()
        groups = replica.snapshot(member_groups=()).groups
        wanted = [g for gid, g in groups.items() if asks_behavior(g) and (every or gid in changed)]
        if every:
            self._last_full = now
        if not wanted:
            return set()
        updates: list[CloudGroup] = []
        for g in wanted:
            try:
                value = self._read(g.id)
            except _Unreadable:
                continue  # keep what the replica knows (None after a delta change: not written)
            if value != g.is_cloud_managed:
                updates.append(dataclasses.replace(g, is_cloud_managed=value))
        if updates:
            with replica.transaction() as tx:
                for g in updates:
                    tx.upsert_group(g)
                tx.mark_changed("groups", [g.id for g in updates])
        log.info("onPremisesSyncBehavior read for %d groups from AD (%d changed)", len(wanted), len(updates))
        return {g.id for g in updates}

    def _read(self, group_id: str) -> bool | None:
        """isCloudManaged, None when Graph answers without it; raises :class:`_Unreadable` on a refusal or a
        malformed answer."""
        try:
            body = self.client.get(f"/beta/groups/{group_id}/onPremisesSyncBehavior")
        except (AuthenticationError, ThrottledError):
            raise
        except SourceError as exc:
            # Unknown stays unknown: such a group is not written (fail closed, writeback.core.scope).
            if not self._denied:
                log.warning(
                    "cannot read onPremisesSyncBehavior of group %s (%s); groups converted to cloud source of "
                    "authority are not written until it can be read: grant the app "
                    "Group-OnPremisesSyncBehavior.ReadWrite.All",
                    group_id,
                    exc,
                )
                self._denied = True
            raise _Unreadable from exc
        value = body.get("isCloudManaged")
        if value is None or isinstance(value, bool):
            return value
        problem = f"{kind_of(value)}, expected true, false or null"
        self.skipped.append(
            SkippedObject("groups", group_id, "onPremisesSyncBehavior.isCloudManaged", problem)
        )
        log.warning(
            "skipped a malformed Graph answer: onPremisesSyncBehavior.isCloudManaged of group %s is %s; the "
            "value read before is kept. Check it with GET /beta/groups/%s/onPremisesSyncBehavior",
            group_id,
            problem,
            group_id,
            extra={
                "event": "graph_object_skipped",
                "resource": "groups",
                "object_id": group_id,
                "field": "onPremisesSyncBehavior.isCloudManaged",
                "problem": problem,
            },
        )
        raise _Unreadable


class _Unreadable(Exception):
    """The behaviour could not be read this time (a refusal, logged once per process; or a malformed answer)."""
