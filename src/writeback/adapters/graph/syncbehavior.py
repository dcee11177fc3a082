"""Source of Authority: read ``onPremisesSyncBehavior`` (beta) for the groups and users that came from AD.

``GET /beta/groups/{id}/onPremisesSyncBehavior`` and ``GET /beta/users/{id}/onPremisesSyncBehavior`` answer
``{"isCloudManaged": bool}``: true once the object's source of authority moved to the cloud, false when it is
AD's (never converted, or rolled back) (https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get
?view=graph-rest-beta; the only permissions it lists are Group-OnPremisesSyncBehavior.ReadWrite.All for groups
and User-OnPremisesSyncBehavior.ReadWrite.All for users, reads included; the page takes no query parameters).
It is a relationship, not a property: delta does not return it, and a rollback (isCloudManaged true -> false,
onPremisesSyncEnabled staying null) may change nothing delta reports. So it is read per object, for the objects
that carry ``onPremisesSecurityIdentifier`` and are not synced now (a conversion sets onPremisesSyncEnabled to
null; a rollback leaves it null until a sync client takes the object again: entra-docs
``how-to-user-source-of-authority-configure.md``, "Status of attributes after you convert SOA", the same table
as for groups): those a delta round changed, and all of them on the first sync of a process and every
``refresh_every`` seconds after.

Groups are always asked. Users only when user provisioning needs them
(:attr:`~writeback.adapters.graph.settings.GraphSettings.read_user_sync_behavior`): otherwise no user request is
made and ``CloudUser.is_cloud_managed`` stays None.

``isCloudManaged`` is a Boolean (https://learn.microsoft.com/graph/api/resources/onpremisessyncbehavior
?view=graph-rest-beta). Any other type is a malformed answer (:func:`~writeback.adapters.graph.validate
.sync_behavior_problem`): the replica keeps the value it holds (unknown, None, for an object a delta round just
changed), and the object is reported in :attr:`skipped` like any malformed Graph object (issue 23, finding 9).

One request per object: with ``source.max_in_flight`` above 1 they are sent that many at once
(:func:`~writeback.adapters.graph.concurrency.map_concurrent`, through the client's adaptive limit), which
matters on a first sync, when every object from AD is asked.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from writeback.adapters.graph.client import GraphClient
from writeback.adapters.graph.concurrency import map_concurrent
from writeback.adapters.graph.validate import sync_behavior_problem
from writeback.core.model import CloudGroup, CloudUser
from writeback.core.ports import ReplicaStore, SkippedObject
from writeback.errors import AuthenticationError, SourceError, ThrottledError

log = logging.getLogger("writeback.graph")

REFRESH_EVERY = 600.0  # seconds between reads of every converted object's behaviour (rollbacks)
FIELD = "onPremisesSyncBehavior.isCloudManaged"

_Obj = TypeVar("_Obj", CloudGroup, CloudUser)


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between asking for a group's behaviour and a user's."""

    resource: str  # the Graph collection, and SkippedObject.resource
    noun: str
    permission: str  # the one the Get onPremisesSyncBehavior page lists for this resource
    unknown: str  # what an unreadable behaviour means for writeback


_GROUPS = _Kind(
    "groups",
    "group",
    "Group-OnPremisesSyncBehavior.ReadWrite.All",
    "groups converted to cloud source of authority are not written until it can be read",
)
_USERS = _Kind(
    "users",
    "user",
    "User-OnPremisesSyncBehavior.ReadWrite.All",
    "users converted to cloud source of authority are not written to their AD accounts until it can be read",
)


def asks_behavior(obj: CloudGroup | CloudUser) -> bool:
    """Objects whose source of authority only onPremisesSyncBehavior can tell: they came from AD (a SID) and
    are not synced now (onPremisesSyncEnabled is null or false after a conversion), and are not deleted."""
    return bool(obj.on_premises_security_identifier) and not obj.on_premises_sync_enabled and not obj.deleted


@dataclass(frozen=True, slots=True)
class BehaviorChanges:
    """The ids whose isCloudManaged changed in one refresh: an incremental plan must reconcile them."""

    groups: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


class SyncBehaviorReader:
    """Keeps ``is_cloud_managed`` in the replica current for the groups (and, when asked, users) from AD."""

    def __init__(
        self,
        client: GraphClient,
        *,
        refresh_every: float = REFRESH_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.refresh_every, self.clock = client, refresh_every, clock
        self._last_full: float | None = None
        self._denied: set[str] = set()  # resources whose refusal was logged (once per process)
        self._lock = threading.Lock()  # _denied between the threads of one refresh
        self.skipped: list[SkippedObject] = []  # the malformed answers of the last refresh

    @property
    def reads_users(self) -> bool:
        return self.client.settings.read_user_sync_behavior

    def refresh(
        self,
        replica: ReplicaStore,
        changed: Collection[str],
        changed_users: Mapping[str, CloudUser] | None = None,
    ) -> BehaviorChanges:
        """Read the behaviour of the objects that need it: the groups in ``changed`` and the users in
        ``changed_users`` (as a delta round just stored them: reading them back would cost a snapshot of
        every user), or every one of them when the periodic refresh is due.

        Returns the ids whose isCloudManaged changed (a conversion or a rollback)."""
        self.skipped = []
        users_changed = changed_users if changed_users is not None and self.reads_users else {}
        now = self.clock()
        every = self._last_full is None or now - self._last_full >= self.refresh_every
        if not every and not changed and not users_changed:
            return BehaviorChanges()
        if every:
            self._last_full = now
            # Users come only with a whole snapshot; without them, groups' properties are enough.
            snap = replica.snapshot() if self.reads_users else replica.snapshot(member_groups=())
            groups = [g for g in snap.groups.values() if asks_behavior(g)]
            users = [u for u in snap.users.values() if asks_behavior(u)] if self.reads_users else []
        else:
            groups = []
            if changed:
                all_groups = replica.snapshot(member_groups=()).groups
                groups = [g for gid, g in all_groups.items() if gid in changed and asks_behavior(g)]
            users = [u for u in users_changed.values() if asks_behavior(u)]
        result = BehaviorChanges(groups=self._refresh(replica, _GROUPS, groups))
        if self.reads_users:
            result.users.update(self._refresh(replica, _USERS, users))
        return result

    def _refresh(self, replica: ReplicaStore, kind: _Kind, wanted: Iterable[_Obj]) -> set[str]:
        objects = list(wanted)
        asked = len(objects)
        if not asked:
            return set()
        updates: list[_Obj] = []
        values = map_concurrent(
            lambda obj: self._read_or_unknown(kind, obj.id), objects, self.client.settings.max_in_flight
        )
        for obj, (readable, value) in zip(objects, values, strict=True):
            if not readable:
                continue  # keep what the replica knows (None after a delta change: not written)
            if value != obj.is_cloud_managed:
                updates.append(dataclasses.replace(obj, is_cloud_managed=value))
        if updates:
            with replica.transaction() as tx:
                for obj in updates:
                    if isinstance(obj, CloudGroup):
                        tx.upsert_group(obj)
                    else:
                        tx.upsert_user(obj)
                tx.mark_changed(kind.resource, [o.id for o in updates])
        log.info(
            "onPremisesSyncBehavior read for %d %ss from AD (%d changed)", asked, kind.noun, len(updates)
        )
        return {o.id for o in updates}

    def _read_or_unknown(self, kind: _Kind, object_id: str) -> tuple[bool, bool | None]:
        """(True, :meth:`_read`), or (False, None) when it cannot be read this time."""
        try:
            return True, self._read(kind, object_id)
        except _Unreadable:
            return False, None

    def _read(self, kind: _Kind, object_id: str) -> bool | None:
        """isCloudManaged, None when Graph answers without it; raises :class:`_Unreadable` on a refusal or a
        malformed answer."""
        path = f"/beta/{kind.resource}/{object_id}/onPremisesSyncBehavior"
        try:
            body = self.client.get(path)
        except (AuthenticationError, ThrottledError):
            raise
        except SourceError as exc:
            # Unknown stays unknown: such an object is not written (fail closed, writeback.core.scope).
            with self._lock:
                first = kind.resource not in self._denied
                self._denied.add(kind.resource)
            if first:
                log.warning(
                    "cannot read onPremisesSyncBehavior of %s %s (%s); %s: grant the app %s",
                    kind.noun,
                    object_id,
                    exc,
                    kind.unknown,
                    kind.permission,
                )
            raise _Unreadable from exc
        behavior = _behavior_object(body)
        problem = sync_behavior_problem(behavior)
        if problem is None:
            value = behavior.get("isCloudManaged")
            return value if isinstance(value, bool) else None
        self.skipped.append(SkippedObject(kind.resource, object_id, problem.field, problem.problem))
        log.warning(
            "skipped a malformed Graph answer: %s of %s %s is %s; the value the replica holds is kept. Check "
            "it with GET %s",
            problem.field,
            kind.noun,
            object_id,
            problem.problem,
            path,
            extra={
                "event": "graph_object_skipped",
                "resource": kind.resource,
                "object_id": object_id,
                "field": problem.field,
                "problem": problem.problem,
            },
        )
        raise _Unreadable


def _behavior_object(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The onPremisesSyncBehavior object of an answer. The resource's JSON representation is the object itself
    (as the emulator answers), but the Get page's example response wraps it in ``value``; both are read."""
    inner = body.get("value")
    if "isCloudManaged" not in body and isinstance(inner, Mapping):
        return inner
    return body


class _Unreadable(Exception):
    """The behaviour could not be read this time (a refusal, logged once per process; or a malformed answer)."""
