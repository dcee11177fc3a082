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

Why not JSON ``$batch`` (up to 20 requests in one round trip, https://learn.microsoft.com/graph/json-batching)?
Each request in a batch is still evaluated against the throttling limits one by one, so a batch saves round
trips, not budget; and a batch answers only when its slowest request does, which holds back the groups it
carries. Plain requests over a few kept-alive connections give the same parallelism with per-group completion.

This module only reads; :class:`~writeback.adapters.graph.delta.GraphSource` stores what it yields in the
replica, in the same transaction as the cursor, so a crash mid-read leaves the replica as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote

from writeback.adapters.graph.client import GraphClient, Params
from writeback.adapters.graph.validate import kind_of, object_id_of
from writeback.errors import SourceError, SyncStateError

log = logging.getLogger("writeback.graph")

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
    """Reads every group and its direct members, ``workers`` requests in flight; yields each group whole."""

    def __init__(self, client: GraphClient, version: str, select: str, *, workers: int) -> None:
        self.client, self.version, self.select, self.workers = client, version, select, workers
        self.vanished: list[str] = []  # groups listed, then gone (404) before their members were read

    def groups(self) -> Iterator[dict[str, Any]]:
        """Each group as a delta entry would carry it: its properties and ``members@delta`` with every
        member, yielded once its member list has been read to the last page (never a partial list).

        The list's pages and the member reads share one pool: each page's groups are read as soon as the page
        arrives, while the next page is fetched. A group deleted between the list and its member read (404)
        is left out; the catch-up round from the cursor, taken before the list, reports its removal."""
        top = self.client.settings.page_size
        list_path = f"/{self.version}/groups"
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="graph-read")
        pending: dict[Future[Any], dict[str, Any] | None] = {}  # future -> its group (None: a list page)
        try:
            pending[pool.submit(self.client.get, list_path, {"$select": self.select, "$top": top})] = None
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    group = pending.pop(future)
                    if group is None:
                        page = future.result()
                        if next_link := page.get("@odata.nextLink"):
                            pending[pool.submit(self.client.get, str(next_link))] = None
                        for obj in map(as_delta_entry, page_items(page, f"GET {list_path}")):
                            group_id = object_id_of(obj) if isinstance(obj, Mapping) else None
                            if group_id is None:
                                yield obj  # malformed: GraphSource skips and reports it
                            else:
                                pending[pool.submit(self._members, group_id)] = obj
                        continue
                    members = future.result()
                    if members is None:
                        self.vanished.append(str(group.get("id")))
                        log.info(
                            "group %s was deleted while it was read; the catch-up round removes it",
                            group["id"],
                        )
                        continue
                    yield {**group, "members@delta": members}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _members(self, group_id: str) -> list[Any] | None:
        """Every direct member of one group (all its pages), or None when the group is gone (404)."""
        path = f"/{self.version}/groups/{quote(group_id, safe='')}/members"
        page = self.client.get_if_found(
            path, {"$select": MEMBER_SELECT, "$top": self.client.settings.page_size}
        )
        if page is None:
            return None
        members: list[Any] = []
        while True:
            members += page_items(page, f"GET {path}")
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return members
            following = self.client.get_if_found(str(next_link))
            if following is None:
                return None
            page = following
