"""Delta sync: bring the local replica up to date with Graph's users and groups delta queries.

One round per resource: follow ``@odata.nextLink`` until ``@odata.deltaLink``, applying every page inside one
replica transaction that also stores the new delta link. A crash or error mid-round rolls back, leaving the
previous replica and link, so the next run repeats the round from the same point.

A round without a stored link (first run) or after the token expired (``410 Gone``, ``syncStateNotFound``,
``resyncRequired``) is *full*: the replica's objects of that resource are reset first, then rebuilt from the
current state plus ``directory/deletedItems``, so soft-deleted objects stay soft-deleted instead of looking
permanently deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from writeback.adapters.graph.client import GraphClient
from writeback.adapters.graph.convert import (
    group_from_graph,
    member_changes,
    removed_reason,
    unified_writeback_default,
    user_from_graph,
)
from writeback.adapters.graph.syncbehavior import SyncBehaviorReader
from writeback.core.model import MemberRef
from writeback.core.ports import ReplicaStore, ReplicaTransaction, SyncReport
from writeback.errors import SyncStateError

log = logging.getLogger("writeback.graph")

Resource = Literal["users", "groups"]
RESOURCES: tuple[Resource, ...] = ("users", "groups")
MAX_RESYNCS = 3  # full rounds tried after expired tokens before giving up on a resource


@dataclass
class _Round:
    """What one round saw: ids touched, ids present (not removed) at the end, and each group's properties
    merged across the pages that repeat it (users are not split, so only their ids are kept)."""

    changed: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    group_props: dict[str, dict[str, Any]] = field(default_factory=dict)


class GraphSource:
    """:class:`~writeback.core.ports.CloudSource` over Microsoft Graph delta queries."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self.behavior = SyncBehaviorReader(client)

    def sync(self, replica: ReplicaStore) -> SyncReport:
        """Run one delta round for users, then groups. Returns what changed and how many requests it took."""
        start = self.client.stats.get("requests", 0)
        full = False
        users: set[str] = set()
        groups: set[str] = set()
        for resource in RESOURCES:
            changed, was_full = self._sync_resource(replica, resource)
            full = full or was_full
            (users if resource == "users" else groups).update(changed)
        groups |= self.behavior.refresh(replica, groups)
        if self.client.settings.read_group_settings:
            groups |= self._sync_group_settings(replica)
        return SyncReport(
            full_resync=full,
            changed_users=frozenset(users),
            changed_groups=frozenset(groups),
            requests=self.client.stats.get("requests", 0) - start,
        )

    def _sync_group_settings(self, replica: ReplicaStore) -> set[str]:
        """Read NewUnifiedGroupWritebackDefault (tenant directory setting Group.Unified) into the replica.

        Group settings have no delta query, so they are read whole on every sync (one small request). When
        the value changes, every Microsoft 365 group whose isEnabled is null changes scope: their ids are
        returned as changed so an incremental plan reconciles them.
        """
        value = unified_writeback_default(self.client.iter_pages("/v1.0/groupSettings"))
        if replica.get_unified_writeback_default() == value:
            return set()
        before = replica.snapshot(())  # every group's properties, no members: only when the value changed
        changed = {g.id for g in before.groups.values() if g.is_unified and g.writeback_enabled is None}
        with replica.transaction() as tx:
            tx.set_unified_writeback_default(value)
            tx.mark_changed("groups", changed)
        log.info(
            "tenant setting NewUnifiedGroupWritebackDefault is now %s", "unset" if value is None else value
        )
        return changed

    # -- rounds ----------------------------------------------------------------------------------------------

    def _sync_resource(self, replica: ReplicaStore, resource: Resource) -> tuple[set[str], bool]:
        link = replica.get_delta_link(resource)
        if link is not None and replica.get_delta_query(resource) != self._query(resource):
            # A delta link replays changes for the query it was made with: after a change of API version or
            # $select (beta for writebackConfiguration, new properties after an upgrade) unchanged objects would
            # never arrive with the new properties. One full round reads them.
            log.info("%s: the delta query changed (version or properties); starting a full round", resource)
            link = None
        if link is not None:
            try:
                return self._round(replica, resource, link), False
            except SyncStateError as exc:
                log.warning("%s delta token no longer valid (%s); starting a full resync", resource, exc)
        for attempt in range(1, MAX_RESYNCS + 1):
            try:
                return self._round(replica, resource, None), True
            except SyncStateError as exc:
                if attempt == MAX_RESYNCS:
                    raise SyncStateError(
                        f"{resource}: a full delta round failed {MAX_RESYNCS} times in a row with an expired "
                        f"sync state; last error: {exc}"
                    ) from exc
                log.warning(
                    "%s full delta round hit an expired sync state (%s); restarting it", resource, exc
                )
        raise AssertionError("unreachable")

    def _round(self, replica: ReplicaStore, resource: Resource, link: str | None) -> set[str]:
        full = link is None
        kept_members = self._soft_deleted_members(replica) if full and resource == "groups" else {}
        seen = _Round()
        pages = 0
        with replica.transaction() as tx:
            if full:
                tx.reset(resource)
                url, params = self._initial_request(resource)
                page_iter = self.client.pages(url, params)
            else:
                assert link is not None
                page_iter = self.client.pages(link)
            delta_link: str | None = None
            for page in page_iter:
                pages += 1
                for obj in page.get("value") or ():
                    if isinstance(obj, Mapping) and obj.get("id"):
                        _apply(tx, resource, obj, seen)
                delta_link = page.get("@odata.deltaLink")
            if not delta_link:
                raise SyncStateError(f"{resource} delta round ended without an @odata.deltaLink")
            if full:
                self._load_deleted_items(tx, resource, seen, kept_members)
            tx.mark_changed(resource, seen.changed)
            tx.set_delta_link(resource, str(delta_link))
            tx.set_delta_query(resource, self._query(resource))
        log.info(
            "%s delta round (%s): %d pages, %d objects changed",
            resource,
            "full" if full else "incremental",
            pages,
            len(seen.changed),
        )
        return seen.changed

    def _query(self, resource: Resource) -> str:
        """What a delta link depends on: the initial request's path and $select."""
        url, params = self._initial_request(resource)
        return f"{url}?$select={params['$select']}"

    def _initial_request(self, resource: Resource) -> tuple[str, dict[str, str | int]]:
        settings = self.client.settings
        if resource == "users":
            return "/v1.0/users/delta", {"$select": ",".join(settings.user_select)}
        return f"/{settings.group_version}/groups/delta", {"$select": ",".join(settings.group_select)}

    def _load_deleted_items(
        self,
        tx: ReplicaTransaction,
        resource: Resource,
        seen: _Round,
        kept_members: Mapping[str, frozenset[MemberRef]],
    ) -> None:
        """Store soft-deleted (restorable) objects after a full round, keeping their last known members.

        Objects the round saw live stay live: the delta link marks the state this round describes, and a later
        deletion will arrive in the next incremental round.
        """
        settings = self.client.settings
        if resource == "users":
            path = "/v1.0/directory/deletedItems/microsoft.graph.user"
            select = settings.user_select
        else:
            path = f"/{settings.group_version}/directory/deletedItems/microsoft.graph.group"
            select = tuple(p for p in settings.group_select if p != "members")
        for obj in self.client.iter_pages(path, {"$select": ",".join(select)}):
            object_id = obj.get("id")
            if not object_id or object_id in seen.live:
                continue
            seen.changed.add(object_id)
            if resource == "users":
                tx.upsert_user(user_from_graph(obj, deleted=True))
            else:
                tx.upsert_group(group_from_graph(obj, deleted=True))
                if members := kept_members.get(object_id):
                    tx.add_members(object_id, members)

    @staticmethod
    def _soft_deleted_members(replica: ReplicaStore) -> dict[str, frozenset[MemberRef]]:
        """Members of soft-deleted groups before a resync: Graph cannot list them again until a restore."""
        if replica.get_delta_link("groups") is None:
            return {}
        groups = replica.snapshot().groups
        return {gid: g.members for gid, g in groups.items() if g.deleted and g.members}


def _apply(tx: ReplicaTransaction, resource: Resource, obj: Mapping[str, Any], seen: _Round) -> None:
    """Apply one delta object. A group repeated on later pages merges: properties update, members accumulate.

    An entry that carries no property besides its id (only a ``members@delta`` slice) changes members only,
    so it never blanks the stored properties of the group.
    """
    object_id = str(obj["id"])
    seen.changed.add(object_id)
    reason = removed_reason(obj)
    if reason is not None:
        seen.live.discard(object_id)
        seen.group_props.pop(object_id, None)
        hard = reason == "deleted"
        if resource == "users":
            tx.remove_user(object_id, hard=hard)
        else:
            tx.remove_group(object_id, hard=hard)
        return
    seen.live.add(object_id)
    if resource == "users":
        tx.upsert_user(user_from_graph(obj))
        return
    properties = {k: v for k, v in obj.items() if "@" not in k}
    if len(properties) > 1:
        merged = seen.group_props.setdefault(object_id, {})
        merged.update(properties)
        tx.upsert_group(group_from_graph(merged))
    _apply_members(tx, object_id, member_changes(obj))


def _apply_members(tx: ReplicaTransaction, group_id: str, changes: Iterable[tuple[bool, MemberRef]]) -> None:
    """Apply members@delta in order, batching consecutive adds and consecutive removes."""
    adds: list[MemberRef] = []
    removes: list[str] = []
    for added, ref in changes:
        if added:
            if removes:
                tx.remove_members(group_id, removes)
                removes = []
            adds.append(ref)
        else:
            if adds:
                tx.add_members(group_id, adds)
                adds = []
            removes.append(ref.id)
    if adds:
        tx.add_members(group_id, adds)
    if removes:
        tx.remove_members(group_id, removes)
