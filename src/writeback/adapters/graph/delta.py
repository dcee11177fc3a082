"""Delta sync: bring the local replica up to date with Graph's users and groups delta queries.

One round per resource: follow ``@odata.nextLink`` until ``@odata.deltaLink``, applying every page inside one
replica transaction that also stores the new delta link. A crash or error mid-round rolls back, leaving the
previous replica and link, so the next run repeats the round from the same point.

A round without a stored link (first run) or after the token expired (``410 Gone``, ``syncStateNotFound``,
``resyncRequired``) is *full*: the replica's objects of that resource are reset first, then rebuilt from the
current state plus ``directory/deletedItems``, so soft-deleted objects stay soft-deleted instead of looking
permanently deleted.

With ``source.max_in_flight`` above 1, a full round is read concurrently instead (:mod:`.firstread`): the
cursor first (``$deltatoken=latest``), then every object listed and every group's members read with several
requests in flight, stored in one transaction with the cursor as the delta link, then one incremental round
from the cursor catches up with what changed meanwhile.

A malformed object (a property writeback reads with a type Graph does not document for it; see
:mod:`writeback.adapters.graph.validate`) is skipped, logged as a warning with ``event`` ``graph_object_skipped``,
its id and the property, and listed in :attr:`SyncReport.skipped`; the rest of the round is applied and the
delta link moves on. What happens to it:

- Never replicated: it stays out of the replica until Graph sends it well-formed (its next change).
- Already replicated: its **last good copy is kept**. An incremental round simply does not store the bad copy;
  a full round, which starts from an empty replica, restores the copy the replica held before the round. So a
  malformed object never reads as a deleted group (an AD delete) or a vanished user (member removals).
- Its well-formed ``members@delta`` entries are still applied: a delta link replays no membership change once
  it moves on, so dropping them would lose them until the next full round. A malformed entry (no id, an id
  that is not a string, ...) skips that member alone; the group and its other members go on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from writeback.adapters.graph.client import GraphClient
from writeback.adapters.graph.convert import (
    MalformedObjectError,
    group_from_graph,
    member_delta,
    removed_reason,
    unified_writeback_default,
    user_from_graph,
)
from writeback.adapters.graph.firstread import GroupReader, Pumps, in_background, list_items, take_cursor
from writeback.adapters.graph.syncbehavior import SyncBehaviorReader, asks_behavior
from writeback.adapters.graph.validate import Problem, id_problem, kind_of, object_id_of, removed_problem
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, MemberRef
from writeback.core.ports import GroupStream, ReplicaStore, ReplicaTransaction, SkippedObject, SyncReport
from writeback.errors import SourceError, SyncStateError

log = logging.getLogger("writeback.graph")

Resource = Literal["users", "groups"]
RESOURCES: tuple[Resource, ...] = ("users", "groups")
MAX_RESYNCS = 3  # full rounds tried after expired tokens before giving up on a resource
# Objects of the side-by-side first read waiting to be stored at most: with Graph answering faster than the
# replica is written (the emulator at 0 ms), the read waits rather than piling up in memory (medium: +30 MB).
PUMPED = 256


@dataclass
class _Round:
    """What one round saw: ids touched, ids present (not removed) at the end, and each group's properties
    merged across the pages that repeat it (users are not split: the live users as stored, whose
    onPremisesSyncBehavior is read next); the objects skipped as malformed, and of those the ones with no good
    copy stored by this round (id -> deleted flag): a full round restores their last good copy from before it."""

    resource: Resource
    changed: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    group_props: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Kept only when users' onPremisesSyncBehavior is read, and only the users it asks about (a full round of a
    # big tenant would otherwise hold every user twice).
    keep_users: bool = False
    users: dict[str, CloudUser] = field(default_factory=dict)
    skipped: list[SkippedObject] = field(default_factory=list)
    malformed: dict[str, bool] = field(default_factory=dict)

    def skip(self, object_id: str | None, problem: Problem) -> None:
        self.skipped.append(SkippedObject(self.resource, object_id, problem.field, problem.problem))

    def skip_error(self, exc: MalformedObjectError, *, deleted: bool = False) -> None:
        self.skipped.append(SkippedObject(self.resource, exc.object_id, exc.field, exc.problem))
        if exc.object_id is not None:
            self.malformed[exc.object_id] = deleted

    def stored(self, object_id: str) -> None:
        self.changed.add(object_id)
        self.malformed.pop(object_id, None)

    def then(self, later: _Round) -> _Round:
        """This full read followed by ``later``, its catch-up round: what the two changed together. A user the
        catch-up changed is as the catch-up left it (removed users are not kept)."""
        users = {k: v for k, v in self.users.items() if k not in later.changed}
        users.update(later.users)
        return _Round(
            self.resource,
            changed=self.changed | later.changed,
            live=(self.live - later.changed) | later.live,
            keep_users=self.keep_users,
            users=users,
            skipped=self.skipped + later.skipped,
        )


@dataclass
class _FirstRead:
    """One resource's first read being stored (:meth:`GraphSource._first_read`, or both resources' at once):
    its cursor, what it saw, and what the replica held before it (None: nothing)."""

    resource: Resource
    cursor: str
    seen: _Round
    before: CloudSnapshot | None
    kept_members: Mapping[str, frozenset[MemberRef]]
    reader: GroupReader | None = None  # the groups' reader, for the log
    count: int = 0  # objects stored so far

    def store(self, tx: ReplicaTransaction, objects: Iterable[Any]) -> None:
        """Store ``objects`` (the next ones read) in ``tx``; an entry that is not an object is skipped."""
        for obj in objects:
            index, self.count = self.count, self.count + 1
            if isinstance(obj, Mapping):
                _apply(tx, self.resource, obj, self.seen)
            else:
                self.seen.skip(None, Problem(f"value[{index}]", f"{kind_of(obj)}, expected an object"))


class GraphSource:
    """:class:`~writeback.core.ports.CloudSource` over Microsoft Graph delta queries."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self.behavior = SyncBehaviorReader(client)

    def sync(self, replica: ReplicaStore, stream: GroupStream | None = None) -> SyncReport:
        """Run one delta round for users, then groups, then read the beta onPremisesSyncBehavior of the groups
        (and, with ``read_user_sync_behavior``, users) from AD that need it (:mod:`.syncbehavior`). Returns what
        changed and how many requests it took.

        ``stream``: with a concurrent first read of the groups (a full round, ``max_in_flight`` above 1), called
        from this thread with each lot of groups whose member list has been read in full, while the rest is
        still being read (:mod:`writeback.app.streaming`); no replica transaction is open during the calls."""
        start = self.client.stats.get("requests", 0)
        full = False
        users: set[str] = set()
        groups: set[str] = set()
        stored_users: dict[str, CloudUser] = {}
        skipped: list[SkippedObject] = []
        for resource, seen, was_full in self._sync_resources(replica, stream):
            full = full or was_full
            (users if resource == "users" else groups).update(seen.changed)
            stored_users.update(seen.users)
            skipped += seen.skipped
        behavior = self.behavior.refresh(replica, groups, stored_users)
        groups |= behavior.groups
        users |= behavior.users
        skipped += self.behavior.skipped
        if self.client.settings.read_group_settings:
            groups |= self._sync_group_settings(replica)
        if skipped:
            log.warning(
                "%d malformed Graph object%s skipped this sync (the rest was applied; see the warnings before)",
                len(skipped),
                "" if len(skipped) == 1 else "s",
                extra={"event": "graph_objects_skipped", "skipped": len(skipped)},
            )
        return SyncReport(
            full_resync=full,
            changed_users=frozenset(users),
            changed_groups=frozenset(groups),
            requests=self.client.stats.get("requests", 0) - start,
            skipped=tuple(skipped),
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

    def _sync_resources(
        self, replica: ReplicaStore, stream: GroupStream | None = None
    ) -> Iterator[tuple[Resource, _Round, bool]]:
        """Each resource's round: (resource, what it saw, whether it was full), users first.

        When neither resource has a link a round may follow (the first sync; a change of query or endpoint for
        both) and the first read is concurrent, both full rounds are read side by side
        (:meth:`_full_rounds_side_by_side`). Otherwise each in turn: an incremental round from its link, a full
        round without one or once the link has expired (a resync after ``410 Gone`` is then read one resource
        after the other, as the expiry shows only when the incremental round is tried)."""
        links = {resource: self._usable_link(replica, resource) for resource in RESOURCES}
        if not any(links.values()) and stream is None and self.client.settings.max_in_flight > 1:
            yield from self._full_rounds_side_by_side(replica)
            return
        for resource in RESOURCES:
            link = links[resource]
            if link is not None:
                try:
                    yield resource, self._round(replica, resource, link), False
                    continue
                except SyncStateError as exc:
                    log.warning("%s delta token no longer valid (%s); starting a full resync", resource, exc)
            yield resource, self._full_resync(replica, resource, stream), True

    def _full_rounds_side_by_side(self, replica: ReplicaStore) -> Iterator[tuple[Resource, _Round, bool]]:
        """The full rounds of users and groups read and stored at once (issue 27: the users' list, about 21
        sequential pages at medium, each paying Graph's latency, no longer waits for the groups' read or the
        other way, and what arrives is stored while the rest is read).

        Both cursors are taken first, as each full round takes its own (:meth:`_full_round`). Then the users'
        list and the groups' reads start together, each pulled by a thread of its own (:class:`.firstread.Pumps`)
        through the one client, so ``max_in_flight`` and the throttling that lowers it stay shared: the users'
        list holds one request in flight at most, the groups' reader the rest. Whatever arrives, from either, is
        stored in this thread (SQLite: one connection), in **one transaction for both resources** that ends with
        both cursors as their delta links: a crash or an error mid-read leaves the replica and both links as
        before it. Each resource is stored exactly as its first read alone stores it (:class:`_FirstRead`).
        Then each resource's catch-up round, users first; a resource whose round meets an expired sync state is
        read again on its own, as :meth:`_full_resync` would."""
        cursors = {r: take_cursor(self.client, *self._initial_request(r)) for r in RESOURCES}
        reader = self._group_reader()
        stop = threading.Event()
        # What the replica held, when either resource had a link (its query changed): one snapshot for both.
        held = any(replica.get_delta_link(r) is not None for r in RESOURCES)
        before = replica.snapshot() if held else None
        firsts = {r: self._begin_first(replica, r, cursors[r], before) for r in RESOURCES}
        del before  # held by the first reads that need it
        firsts["groups"].reader = reader
        readers: dict[str, tuple[Iterator[Any], threading.Event | None]] = {
            "users": (self._users_list(), None),
            "groups": (reader.groups(stop), stop),
        }
        try:
            with Pumps(readers, bound=PUMPED) as arrived, replica.transaction() as tx:
                for resource in RESOURCES:
                    tx.reset(resource)
                for name, lot in arrived.lots():
                    firsts[cast(Resource, name)].store(tx, lot)  # the readers' names are the resources
                for resource in RESOURCES:
                    self._end_first(tx, firsts[resource])
        except SyncStateError as exc:
            log.warning("full delta rounds hit an expired sync state (%s); restarting them", exc)
            for resource in RESOURCES:
                yield resource, self._full_resync(replica, resource, None, attempts=MAX_RESYNCS - 1), True
            return
        for resource in RESOURCES:
            self._log_first(firsts[resource])
        for resource in RESOURCES:
            try:
                seen = firsts[resource].seen.then(self._round(replica, resource, cursors[resource]))
            except SyncStateError as exc:
                log.warning(
                    "%s catch-up round hit an expired sync state (%s); restarting its full round",
                    resource,
                    exc,
                )
                seen = self._full_resync(replica, resource, None, attempts=MAX_RESYNCS - 1)
            yield resource, seen, True

    def _usable_link(self, replica: ReplicaStore, resource: Resource) -> str | None:
        """The stored delta link of ``resource`` when a round may follow it (None: the round is full)."""
        link = replica.get_delta_link(resource)
        if link is not None and replica.get_delta_query(resource) != self._query(resource):
            # A delta link replays changes for the query it was made with: after a change of API version or
            # $select (beta for writebackConfiguration, new properties after an upgrade) unchanged objects would
            # never arrive with the new properties. One full round reads them.
            log.info("%s: the delta query changed (version or properties); starting a full round", resource)
            link = None
        if link is not None and not self.client.serves(link):
            # graph_url changed (another cloud, a proxy, the sandbox's emulator on a new port): the stored link
            # belongs to the old endpoint and is never followed (the token would go there); read in full.
            log.warning(
                "%s: the stored delta link is not on the configured Graph endpoint %s (graph_url changed?); "
                "starting a full round",
                resource,
                self.client.settings.base_url,
            )
            link = None
        return link

    def _full_resync(
        self,
        replica: ReplicaStore,
        resource: Resource,
        stream: GroupStream | None = None,
        *,
        attempts: int = MAX_RESYNCS,
    ) -> _Round:
        """A full round, tried again (up to ``attempts`` times) while it meets an expired sync state."""
        for attempt in range(1, attempts + 1):
            try:
                return self._full_round(replica, resource, stream)
            except SyncStateError as exc:
                if attempt == attempts:
                    raise SyncStateError(
                        f"{resource}: a full delta round failed {MAX_RESYNCS} times in a row with an expired "
                        f"sync state; last error: {exc}"
                    ) from exc
                log.warning(
                    "%s full delta round hit an expired sync state (%s); restarting it", resource, exc
                )
        raise AssertionError("unreachable")

    def _full_round(
        self, replica: ReplicaStore, resource: Resource, stream: GroupStream | None = None
    ) -> _Round:
        """A full round: one delta round from nothing, or with ``max_in_flight`` above 1 the concurrent first
        read from a cursor taken first, then an incremental round from that cursor (:mod:`.firstread`)."""
        if self.client.settings.max_in_flight <= 1:
            return self._round(replica, resource, None)
        url, params = self._initial_request(resource)
        cursor = take_cursor(self.client, url, params)
        first = self._first_read(replica, resource, cursor, stream)
        return first.then(self._round(replica, resource, cursor))

    def _first_read(
        self, replica: ReplicaStore, resource: Resource, cursor: str, stream: GroupStream | None = None
    ) -> _Round:
        """Store every object of ``resource`` as listed now (groups with all their members), in one
        transaction that ends with ``cursor`` as the delta link: the replica is then at least as new as the
        cursor, and the next round from it replays what changed since (harmlessly where already seen).

        With ``stream`` the groups are read in full first (each complete group handed to ``stream`` as it
        arrives: :func:`_read_streaming`), then stored exactly as without it, in the same one transaction."""
        first = self._begin_first(replica, resource, cursor)
        objects: Iterable[Any]
        if resource == "users":
            objects = self._users_list()
        else:
            reader = first.reader = self._group_reader()
            if stream is not None:
                # Read in full before the transaction: the stream plans and writes (journal, applied state)
                # through the same store meanwhile, which an open replica transaction would swallow.
                stop = threading.Event()
                objects = _read_streaming(reader.groups(stop), stream, stop)
            else:
                objects = reader.groups()
        with replica.transaction() as tx:
            tx.reset(resource)
            first.store(tx, objects)
            self._end_first(tx, first)
        self._log_first(first)
        return first.seen

    def _begin_first(
        self, replica: ReplicaStore, resource: Resource, cursor: str, snapshot: CloudSnapshot | None = None
    ) -> _FirstRead:
        """A first read of ``resource`` about to be stored: what the replica held before it, when it held the
        resource (read before its transaction: the members of soft-deleted groups and the last good copies).
        ``snapshot``: that replica's snapshot, already taken (None: taken here when needed)."""
        before = None
        if replica.get_delta_link(resource) is not None:
            before = snapshot if snapshot is not None else replica.snapshot()
        kept_members = _soft_deleted_members(before) if before is not None and resource == "groups" else {}
        seen = _Round(resource, keep_users=self.client.settings.read_user_sync_behavior)
        return _FirstRead(resource, cursor, seen, before, kept_members)

    def _end_first(self, tx: ReplicaTransaction, first: _FirstRead) -> None:
        """The end of a first read's storing, in its transaction: the soft-deleted objects, the last good copies
        of the malformed ones, the changed marks, and the cursor as the delta link."""
        resource, seen = first.resource, first.seen
        self._load_deleted_items(tx, resource, seen, first.kept_members)
        if first.before is not None:
            _restore_last_good(tx, resource, seen, first.before, first.kept_members)
        tx.mark_changed(resource, seen.changed)
        tx.set_delta_link(resource, first.cursor)
        tx.set_delta_query(resource, self._query(resource))

    def _log_first(self, first: _FirstRead) -> None:
        """Logged once the first read is stored (a read that fails and is repeated logs nothing twice)."""
        vanished = first.reader.vanished if first.reader is not None else []
        log.info(
            "%s first read (%d in flight at most): %d objects%s; catching up from the cursor",
            first.resource,
            self.client.settings.max_in_flight,
            first.count,
            f", {len(vanished)} deleted while read" if vanished else "",
        )
        for item in first.seen.skipped:
            _log_skipped(item)

    def _users_list(self) -> Iterator[Any]:
        """Every user as ``/users`` lists it now, in delta's shape (:func:`.firstread.list_items`)."""
        settings = self.client.settings
        params: dict[str, str | int] = {"$select": ",".join(settings.user_select), "$top": settings.page_size}
        return list_items(self.client, "/v1.0/users", params)

    def _group_reader(self) -> GroupReader:
        settings = self.client.settings
        select = ",".join(p for p in settings.group_select if p != "members")
        return GroupReader(self.client, settings.group_version, select, workers=settings.max_in_flight)

    def _round(self, replica: ReplicaStore, resource: Resource, link: str | None) -> _Round:
        full = link is None
        # A full round over an existing replica resets it: what it held before is kept aside for the members of
        # soft-deleted groups and the last good copies of objects that arrive malformed (one read per resync).
        before = replica.snapshot() if full and replica.get_delta_link(resource) is not None else None
        kept_members = _soft_deleted_members(before) if before is not None and resource == "groups" else {}
        seen = _Round(resource, keep_users=self.client.settings.read_user_sync_behavior)
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
                items = page.get("value") or []
                if not isinstance(items, list):
                    # The page itself is broken, not one object: which changes it held is unknown, so the round
                    # fails and is repeated from the same link (nothing is lost).
                    raise SourceError(
                        f"{resource} delta page {pages}: 'value' is {kind_of(items)}, expected a list of objects; "
                        "the round is repeated at the next sync"
                    )
                for index, obj in enumerate(items):
                    if isinstance(obj, Mapping):
                        _apply(tx, resource, obj, seen)
                    else:
                        seen.skip(None, Problem(f"value[{index}]", f"{kind_of(obj)}, expected an object"))
                delta_link = page.get("@odata.deltaLink")
            if not delta_link:
                raise SyncStateError(f"{resource} delta round ended without an @odata.deltaLink")
            if full:
                self._load_deleted_items(tx, resource, seen, kept_members)
                if before is not None:
                    _restore_last_good(tx, resource, seen, before, kept_members)
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
        # Logged once the round is stored, so a round that fails and is repeated logs nothing twice.
        for item in seen.skipped:
            _log_skipped(item)
        return seen

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
        for index, obj in enumerate(self.client.iter_pages(path, {"$select": ",".join(select)})):
            if not isinstance(obj, Mapping):
                seen.skip(None, Problem(f"deletedItems[{index}]", f"{kind_of(obj)}, expected an object"))
                continue
            object_id = object_id_of(obj)
            if object_id is None:
                seen.skip(None, id_problem(obj) or Problem("id", "unusable"))
                continue
            if object_id in seen.live:
                continue
            try:
                if resource == "users":
                    tx.upsert_user(user_from_graph(obj, deleted=True))
                else:
                    tx.upsert_group(group_from_graph(obj, deleted=True))
                    if members := kept_members.get(object_id):
                        tx.add_members(object_id, members)
            except MalformedObjectError as exc:
                seen.skip_error(exc, deleted=True)
                continue
            seen.stored(object_id)


def _read_streaming(
    objects: Iterator[Any], stream: GroupStream, stop: threading.Event | None = None
) -> list[Any]:
    """Every group ``objects`` yields (read on in a thread of its own: :func:`.firstread.in_background`),
    kept for the replica's one transaction; each lot that arrives is handed to ``stream`` as it comes, as the
    groups the replica will hold (members included). A group the replica would store otherwise than as read
    (a malformed property or member: skipped, or its last good copy kept) is kept from ``stream``: the pass
    after the round decides it. Members repeated across groups are kept once (:func:`_shared_members`).
    ``stop`` is set when this ends early (``stream`` raised): the reader behind ``objects`` stops too."""
    kept: list[Any] = []
    shared: dict[tuple[tuple[str, Any], ...], Any] = {}
    for arrived in in_background(objects, name="graph-groups", stop=stop):
        complete: list[CloudGroup] = []
        for obj in arrived:
            kept.append(_shared_members(obj, shared))
            if (group := _as_read(obj)) is not None:
                complete.append(group)
        if complete:
            stream(complete)
    return kept


def _as_read(obj: Any) -> CloudGroup | None:
    """The group a first read's entry stores, or None when it is stored otherwise (malformed in any part)."""
    if not isinstance(obj, Mapping) or id_problem(obj) is not None or removed_reason(obj) is not None:
        return None
    properties = {k: v for k, v in obj.items() if "@" not in k}
    if len(properties) <= 1:  # an id alone stores no group (_apply)
        return None
    try:
        group = group_from_graph(properties)
    except MalformedObjectError:
        return None
    changes, problems = member_delta(obj)
    if problems or not all(added for added, _ in changes):
        return None
    return dataclasses.replace(group, members=frozenset(ref for _, ref in changes))


def _shared_members(obj: Any, shared: dict[tuple[tuple[str, Any], ...], Any]) -> Any:
    """``obj`` with each member entry that another group already holds replaced by that one: the read is
    kept whole until its transaction, and a tenant's memberships name far fewer distinct members."""
    if not isinstance(obj, Mapping) or not isinstance(members := obj.get("members@delta"), list):
        return obj
    out = []
    for m in members:
        if isinstance(m, dict) and all(isinstance(v, str) for v in m.values()):
            # Equal items in the same order: equal entries (one source orders them alike; any other order
            # is merely not shared). Sorting them cost twice as much at 200,000 memberships.
            m = shared.setdefault(tuple(m.items()), m)
        out.append(m)
    return {**obj, "members@delta": out}


def _soft_deleted_members(before: CloudSnapshot) -> dict[str, frozenset[MemberRef]]:
    """Members of soft-deleted groups before a resync: Graph cannot list them again until a restore."""
    return {gid: g.members for gid, g in before.groups.items() if g.deleted and g.members}


def _restore_last_good(
    tx: ReplicaTransaction,
    resource: Resource,
    seen: _Round,
    before: CloudSnapshot,
    kept_members: Mapping[str, frozenset[MemberRef]],
) -> None:
    """After a full round: put back the last good copy of each object that arrived malformed and has no good
    copy from this round. A live group keeps the members this round read (the current truth); a soft-deleted
    one its members from before, as :meth:`GraphSource._load_deleted_items` does."""
    for object_id, deleted in seen.malformed.items():
        if resource == "users":
            if (user := before.users.get(object_id)) is not None:
                tx.upsert_user(dataclasses.replace(user, deleted=deleted))
                seen.changed.add(object_id)
            continue
        if (group := before.groups.get(object_id)) is not None:
            tx.upsert_group(dataclasses.replace(group, deleted=deleted, members=frozenset()))
            if deleted and (members := kept_members.get(object_id)):
                tx.add_members(object_id, members)
            seen.changed.add(object_id)


def _log_skipped(item: SkippedObject) -> None:
    kind = "user" if item.resource == "users" else "group"
    shown = f"{kind} {item.object_id}" if item.object_id is not None else f"a {kind} without a usable id"
    log.warning(
        "skipped a malformed Graph object: %s, %s is %s; the rest of the sync goes on and its last good copy, "
        "if any, is kept. Check it with GET /%s/%s in Graph Explorer; writeback reads it again at its next change",
        shown,
        item.field,
        item.problem,
        item.resource,
        item.object_id or "{id}",
        extra={
            "event": "graph_object_skipped",
            "resource": item.resource,
            "object_id": item.object_id,
            "field": item.field,
            "problem": item.problem,
        },
    )


def _apply(tx: ReplicaTransaction, resource: Resource, obj: Mapping[str, Any], seen: _Round) -> None:
    """Apply one delta object. A group repeated on later pages merges: properties update, members accumulate.

    An entry that carries no property besides its id (only a ``members@delta`` slice) changes members only,
    so it never blanks the stored properties of the group. A malformed object is skipped (see the module
    docstring): an unusable id or ``@removed`` skips all of it, a bad property its properties only.
    """
    problem = id_problem(obj)
    if problem is not None:
        seen.skip(None, problem)
        return
    object_id: str = obj["id"]
    problem = removed_problem(obj)
    if problem is not None:
        seen.skip(object_id, problem)
        return
    reason = removed_reason(obj)
    if reason is not None:
        seen.stored(object_id)
        seen.live.discard(object_id)
        seen.group_props.pop(object_id, None)
        seen.users.pop(object_id, None)
        hard = reason == "deleted"
        if resource == "users":
            tx.remove_user(object_id, hard=hard)
        else:
            tx.remove_group(object_id, hard=hard)
        return
    seen.live.add(object_id)
    if resource == "users":
        try:
            stored = user_from_graph(obj)
        except MalformedObjectError as exc:
            seen.skip_error(exc)
            return
        tx.upsert_user(stored)
        if seen.keep_users and asks_behavior(stored):
            seen.users[object_id] = stored
        seen.stored(object_id)
        return
    properties = {k: v for k, v in obj.items() if "@" not in k}
    if len(properties) > 1:
        # Checked on its own before it is merged: a malformed slice leaves the good properties stored so far.
        merged = {**seen.group_props.get(object_id, {}), **properties}
        try:
            group = group_from_graph(merged)
        except MalformedObjectError as exc:
            seen.skip_error(exc)
            if object_id in seen.group_props:  # a good copy from an earlier page of this round stays
                seen.malformed.pop(object_id, None)
        else:
            seen.group_props[object_id] = merged
            tx.upsert_group(group)
            seen.stored(object_id)
    changes, problems = member_delta(obj)
    for problem in problems:
        seen.skip(object_id, problem)
    if changes:
        _apply_members(tx, object_id, changes)
        seen.changed.add(object_id)


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
