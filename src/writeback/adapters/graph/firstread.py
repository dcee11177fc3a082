"""The concurrent first read: what a full round reads, with several requests in flight.

A full delta round is sequential by construction: every ``@odata.nextLink`` comes from the page before it, so
at Graph's latency (100 ms to seconds a request) a first sync or a resync after ``410 Gone`` costs the number
of pages times the latency before anything can be planned (issue 27; /work/shared/reference/graph-read-speed.md).
Graph allows a faster shape, used for a resource's full round when ``source.max_in_flight`` is above 1:

1. **Take the cursor first**: ``GET /{users|groups}/delta?$select=…&$deltatoken=latest`` answers a deltaLink
   and no data ("sync from now", which Microsoft Entra resources such as users and groups support:
   https://learn.microsoft.com/graph/delta-query-overview, "Use delta query to track changes in a resource
   collection", the note after the steps). The same ``$select`` as the delta rounds, so the link replays what
   they would.
2. **Enumerate** ``/users`` and ``/groups`` with that ``$select`` (``$top=999``, the maximum for directory
   lists), and read each group's members (``/groups/{id}/members?$select=id&$top=999``: the member's
   ``@odata.type`` and id are all the replica keeps) with up to ``max_in_flight`` requests in flight
   (:class:`~writeback.adapters.graph.concurrency.AdaptiveLimit` lowers it on 429s). A group is handed on
   only once its last member page is read: a consistent snapshot of that group.
3. **Catch up** with one delta round from the cursor (:mod:`.delta`). It replays every change made since the
   cursor was taken, some of which the enumeration already saw. Replaying is harmless: a changed object comes
   with its current properties (an upsert), and a membership with its current state (an add of a member
   already there, a removal of one already gone, are no-ops). Graph (and the emulator) report each member
   touched since the token in its state now, so an add and a removal of the same member in between end as
   whichever happened last.

Member pages go in JSON batches (``POST /$batch``, up to 20 requests in one round trip:
https://learn.microsoft.com/graph/json-batching). One member read per group would multiply the round trips by
about ten against a delta round (2,000 groups: 2,000 reads against ~100 delta pages), which at Graph's latency
makes the first read slower than the sequential one even with 8 in flight (graph-read-speed.md). A batch cuts
the round trips twentyfold. It saves round trips, not budget: each request in a batch is still evaluated
against the throttling limits on its own ("Throttling and batching" on that page), so a throttled item is
sent again after its Retry-After and lowers the concurrency like a throttled request.

This module only reads; :class:`~writeback.adapters.graph.delta.GraphSource` stores what it yields in the
replica, in the same transaction as the cursor, so a crash mid-read leaves the replica as it was.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote

from writeback.adapters.graph.client import GraphClient, Params
from writeback.adapters.graph.validate import kind_of, object_id_of
from writeback.errors import SourceError, SyncStateError

log = logging.getLogger("writeback.graph")

STOP_POLL = 0.2  # seconds between two looks at a reader's stop event while it waits for answers
MEMBER_SELECT = "id"  # with the @odata.type Graph gives every directoryObject member


def take_cursor(client: GraphClient, url: str, params: Params) -> str:
    """The deltaLink of ``$deltatoken=latest`` on a delta query: where the catch-up round starts."""
    page = client.get(url, {**params, "$deltatoken": "latest"})
    pages = 1
    while not page.get("@odata.deltaLink"):
        # Graph answers one page with only the deltaLink; should it page, the objects are not needed.
        next_link = page.get("@odata.nextLink")
        if not next_link or pages > 1000:
            raise SyncStateError(f"{url}?$deltatoken=latest answered without an @odata.deltaLink")
        page = client.get(str(next_link))
        pages += 1
    return str(page["@odata.deltaLink"])


def page_items(page: Mapping[str, Any], what: str) -> list[Any]:
    """A list page's ``value``; a page without a list fails the read (which objects it held is unknown)."""
    items = page.get("value")
    if items is None:
        return []
    if not isinstance(items, list):
        raise SourceError(f"{what}: 'value' is {kind_of(items)}, expected a list of objects")
    return items


def as_delta_entry(obj: Any) -> Any:
    """A listed object in the shape a first delta round gives it: a list answers every selected property, null
    (an empty collection for a collection) when unset, where delta "leaves out" the properties never set
    (https://learn.microsoft.com/graph/api/user-delta, "Response"). Without them the object converts exactly as
    delta's does (a missing property reads as null, a missing collection as empty)."""
    if not isinstance(obj, Mapping):
        return obj
    return {k: v for k, v in obj.items() if v is not None and v != []}


def list_items(client: GraphClient, path: str, params: Params) -> Iterator[Any]:
    """Every item of a list, page after page (``@odata.nextLink`` as given), in delta's shape."""
    for page in client.pages(path, params):
        yield from map(as_delta_entry, page_items(page, f"GET {path}"))


class GroupReader:
    """Reads every group and its direct members, ``workers`` requests in flight; yields each group whole.

    Member pages are read in JSON batches of ``settings.batch_size`` (20, Graph's maximum): one round trip
    for the first member page of 20 groups, or for the next page of 20 big groups."""

    def __init__(self, client: GraphClient, version: str, select: str, *, workers: int) -> None:
        self.client, self.version, self.select, self.workers = client, version, select, workers
        self.batch = client.settings.batch_size
        self.vanished: list[str] = []  # groups listed, then gone (404) before their members were read

    def groups(self, stop: threading.Event | None = None) -> Iterator[Any]:
        """Each group as a delta entry would carry it: its properties and ``members@delta`` with every
        member, yielded once its member list has been read to the last page (never a partial list).

        The list's pages and the member reads run side by side: each page's groups are read as soon as the
        page arrives, while the next page is fetched. A group deleted between the list and its member read
        (404) is left out; the catch-up round from the cursor, taken before the list, reports its removal.
        ``stop``: once set, the read ends within a fraction of a second (in-flight requests are let finish)."""
        top = self.client.settings.page_size
        list_path = f"/{self.version}/groups"
        reading: dict[str, tuple[dict[str, Any], list[Any]]] = {}  # group id -> (properties, members so far)
        ready: deque[tuple[str, str]] = deque()  # (group id, URL of its next member page)
        batches: dict[Future[list[dict[str, Any] | None]], list[tuple[str, str]]] = {}
        pool = ThreadPoolExecutor(max_workers=self.workers + 1, thread_name_prefix="graph-read")
        try:
            listing: Future[dict[str, Any]] | None = pool.submit(
                self.client.get, list_path, {"$select": self.select, "$top": top}
            )
            while listing is not None or ready or batches:
                if stop is not None and stop.is_set():
                    return
                while ready and len(batches) < self.workers:
                    chunk = [ready.popleft() for _ in range(min(self.batch, len(ready)))]
                    batches[pool.submit(self._pages, [url for _, url in chunk])] = chunk
                waiting: set[Future[Any]] = set(batches)
                if listing is not None:
                    waiting.add(listing)
                done, _ = wait(
                    waiting, timeout=STOP_POLL if stop is not None else None, return_when=FIRST_COMPLETED
                )
                if listing is not None and listing in done:
                    page = listing.result()
                    next_link = page.get("@odata.nextLink")
                    listing = pool.submit(self.client.get, str(next_link)) if next_link else None
                    for obj in map(as_delta_entry, page_items(page, f"GET {list_path}")):
                        group_id = object_id_of(obj) if isinstance(obj, Mapping) else None
                        if group_id is None:
                            yield obj  # malformed: GraphSource skips and reports it
                            continue
                        reading[group_id] = (dict(obj), [])
                        path = f"/{self.version}/groups/{quote(group_id, safe='')}/members"
                        ready.append((group_id, f"{path}?$select={MEMBER_SELECT}&$top={top}"))
                for future in done & set(batches):
                    chunk = batches.pop(future)
                    for (group_id, url), answer in zip(chunk, future.result(), strict=True):
                        group, members = reading[group_id]
                        if answer is None:
                            del reading[group_id]
                            self.vanished.append(group_id)
                            log.info(
                                "group %s was deleted while it was read; the catch-up removes it", group_id
                            )
                            continue
                        members += page_items(answer, f"GET {url}")
                        if next_link := answer.get("@odata.nextLink"):
                            # Ahead of the first pages still queued: a big group's pages come one after the
                            # other, each a round trip, so its chain starts as soon as it can and runs beside
                            # the small groups instead of after them (and it is held in memory for less long).
                            ready.appendleft((group_id, str(next_link)))
                        else:
                            del reading[group_id]
                            yield {**group, "members@delta": members}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pages(self, urls: list[str]) -> list[dict[str, Any] | None]:
        """One member page per URL (None: the group is gone): in one JSON batch, or one request alone."""
        if len(urls) == 1 or self.batch <= 1:
            return [self.client.get_if_found(url) for url in urls]
        return self.client.batch_get(self.version, urls)


_DONE = object()  # the end of a background iteration
_Arrivals = queue.SimpleQueue[tuple[str, Any]] | queue.Queue[tuple[str, Any]]  # (reader's name, item)


class Pump:
    """``items`` iterated by a thread of its own from the moment it is made, whatever arrived handed on by
    :meth:`lots` (or item by item: iterating the pump) in the consumer's thread.

    What it is for: a reader (an HTTP generator through the client's pool: :meth:`GroupReader.groups`, which
    submits the next requests whenever it is pulled, or :func:`list_items`) must keep being pulled while the
    consumer does something else: writes AD (the streamed first apply, :mod:`writeback.app.streaming`) or
    stores what another reader brought (:class:`Pumps`). The thread only iterates ``items`` (no state store, no
    LDAP): SQLite's one connection stays in the consumer's thread. An error in ``items`` is raised in the
    consumer, after what arrived before it. :meth:`close` (always call it: ``with``) sets ``stop`` (which
    ``items`` may watch too: :meth:`GroupReader.groups` does, so a long group's read does not hold the
    consumer up), stops the thread at its next item and closes the generator (its ``finally``: the request
    pool's shutdown)."""

    def __init__(
        self,
        items: Iterator[Any],
        *,
        name: str,
        stop: threading.Event | None = None,
        into: _Arrivals | None = None,
    ) -> None:
        self._items, self.name = items, name
        # (name, item): several pumps may share one queue (:class:`Pumps`), which may be bounded.
        self._arrived: _Arrivals = queue.SimpleQueue() if into is None else into
        self.stop = stop or threading.Event()
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Hand ``item`` on; on a full (bounded) queue wait for room, unless stopped meanwhile (False)."""
        while True:
            try:
                self._arrived.put((self.name, item), timeout=STOP_POLL)
                return True
            except queue.Full:
                if self.stop.is_set():
                    return False

    def _pump(self) -> None:
        put = self._put
        try:
            for item in self._items:
                if self.stop.is_set() or not put(item):
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            put(_Failed(exc))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def lots(self) -> Iterator[list[Any]]:
        """Lists of whatever arrived since the last one; each waits for at least one item."""
        for _name, lot in _lots(self._arrived, 1):
            yield lot

    def __iter__(self) -> Iterator[Any]:
        for lot in self.lots():
            yield from lot

    def close(self) -> None:
        self.stop.set()
        self._thread.join()

    def __enter__(self) -> Pump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pumps:
    """Several readers, each pumped by a thread of its own (:class:`Pump`) into one queue, so that one consumer
    stores whatever arrives first, from any of them: the users' list and the groups' reads of a full round read
    side by side (:meth:`writeback.adapters.graph.delta.GraphSource.sync`) are stored as they come, in the
    consumer's thread, while the others are still read. ``readers``: name -> (items, stop event or None).
    :meth:`close` stops them all; an error in one is raised in the consumer (and the others stopped by the
    ``with``)."""

    def __init__(
        self, readers: Mapping[str, tuple[Iterator[Any], threading.Event | None]], *, bound: int = 0
    ) -> None:
        # ``bound``: at most that many objects wait for the consumer (0: no bound). When storing is slower
        # than reading (Graph answering at once), a reader waits instead of the whole read piling up in memory.
        self._arrived: _Arrivals = queue.Queue(bound) if bound else queue.SimpleQueue()
        self._pumps: list[Pump] = []
        try:
            for name, (items, stop) in readers.items():
                self._pumps.append(Pump(items, name=name, stop=stop, into=self._arrived))
        except BaseException:
            self.close()
            raise

    def lots(self) -> Iterator[tuple[str, list[Any]]]:
        """(reader's name, what it brought since its last lot), until every reader has finished."""
        return _lots(self._arrived, len(self._pumps))

    def close(self) -> None:
        for pump in self._pumps:
            pump.stop.set()
        for pump in self._pumps:
            pump.close()

    def __enter__(self) -> Pumps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lots(arrived: _Arrivals, readers: int) -> Iterator[tuple[str, list[Any]]]:
    """Whatever ``arrived`` since the last look, as (name, items) in arrival order, each look waiting for one
    item at least, until ``readers`` readers have finished; a reader's error is raised after what it brought
    before it."""
    while readers:
        chunk = [arrived.get()]
        while True:
            try:
                chunk.append(arrived.get_nowait())
            except queue.Empty:
                break
        name, out = "", list[Any]()
        for source, item in chunk:
            if source != name and out:
                yield name, out
                out = []
            name = source
            if item is _DONE:
                readers -= 1
            elif isinstance(item, _Failed):
                if out:  # what arrived before the failure is handed on first
                    yield name, out
                raise item.exc
            else:
                out.append(item)
        if out:
            yield name, out


def in_background(
    items: Iterator[Any], *, name: str = "graph-pump", stop: threading.Event | None = None
) -> Iterator[list[Any]]:
    """``items`` driven by a thread of its own (:class:`Pump`), handed on as lists of whatever arrived since
    the last one; the thread is started at the first pull and stopped when this generator ends or is closed."""
    with Pump(items, name=name, stop=stop) as pump:
        yield from pump.lots()


class _Failed:
    """An exception raised by the background iteration, to raise again in the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
