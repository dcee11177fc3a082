"""Delta queries (``/users/delta``, ``/groups/delta``) built from the tenant's change log.

A *round* is what a client walks from one ``$deltatoken`` (or none) to the next ``@odata.deltaLink``.
A first round lists every live object; a later round replays the change log from the token's sequence
number to the round's start: the objects changed since, with their *current* properties, and for groups
the member references added or removed since (``members@delta``). Anything that changes while a round is
being walked happens after its end sequence, so the next round reports it again: clients merge, as Graph
requires of them.

Like Graph, a big group is split: each entry carries at most ``member_slice`` member references and the
rest of the group follows later in the round, repeating the group (so objects repeat and arrive out of
order). Rounds being walked live in memory (``$skiptoken`` names one, and a retried page is answered
again); delta links carry everything in a signed token and need no server state.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from writeback.testbed.emulator.apierror import GraphApiError
from writeback.testbed.emulator.odata import context_url, render
from writeback.testbed.emulator.statetoken import TokenSigner
from writeback.testbed.emulator.tenant import (
    COLLECTIONS,
    OP_MEMBER_ADD,
    OP_MEMBER_REMOVE,
    OP_RESTORE,
    Tenant,
)

SYNC_STATE_NOT_FOUND = "syncStateNotFound"


@dataclass
class DeltaSettings:
    """Page shape and token lifetimes; all adjustable at run time through the admin API."""

    # Objects (entries) per page, also the largest a client's Prefer: odata.maxpagesize gets. The API reference
    # gives no default for directory delta; Microsoft's Q&A answer (https://learn.microsoft.com/answers/a/2052165)
    # gives 200 objects per page, a larger preference capped.
    page_size: int = 200
    member_slice: int = 1000  # member references per entry; bigger groups are split across entries
    page_members: int = 2000  # member references per page, all entries together
    token_ttl: float = 7 * 24 * 3600.0  # Graph: delta tokens for directory objects live 7 days
    round_ttl: float = 3600.0  # how long an unfinished round (its $skiptoken) stays valid
    max_rounds: int = 256


@dataclass(frozen=True)
class DeltaQuery:
    """What a round returns: one kind of object, an API version, an optional select list and id filter."""

    kind: str  # "user" | "group"
    version: str
    select: tuple[str, ...] | None = None
    ids: frozenset[str] | None = None

    @property
    def with_members(self) -> bool:
        # "group: delta": without $select the response carries the default properties *and* members@delta;
        # with $select, members only when selected (https://learn.microsoft.com/graph/api/group-delta).
        return self.kind == "group" and (self.select is None or "members" in self.select)

    @property
    def collection(self) -> str:
        return COLLECTIONS[self.kind]


# Work items of a round:
#   ("full", id)                        first-round object: current properties and all members
#   ("chg", id, adds, removes, restored, props) changed object; adds/removes are [(member id, kind)],
#                                       props the property names changed (None: all, e.g. created)
#   ("slice", id, entries)              the rest of a split group: repeat the group with these entries
Item = tuple[Any, ...]


@dataclass
class _Round:
    round_id: str
    query: DeltaQuery
    end_seq: int
    generation: int
    items: deque[Item]
    deferred: list[Item] = field(default_factory=list)
    minimal: bool = False  # Prefer: return=minimal
    page_size: int | None = None  # Prefer: odata.maxpagesize of the round's first request (None: default)
    next_page: int = 0
    last: tuple[int, dict[str, Any]] | None = None
    touched: float = field(default_factory=time.monotonic)


def sync_state_not_found() -> GraphApiError:
    return GraphApiError(
        400,
        SYNC_STATE_NOT_FOUND,
        "The delta token is expired or not valid for this resource. Start a new round without a token.",
    )


_ODATA_TYPES = {kind: f"#microsoft.graph.{kind}" for kind in COLLECTIONS}


def _member_entry(member_id: str, kind: str | None, removed: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{kind or 'directoryObject'}", "id": member_id}
    if removed:
        entry["@removed"] = {"reason": "deleted"}
    return entry


class DeltaEngine:
    """Answers delta requests for one tenant. Call under no lock: it takes the tenant's lock itself."""

    def __init__(self, tenant: Tenant, signer: TokenSigner, settings: DeltaSettings | None = None) -> None:
        self.tenant = tenant
        self.signer = signer
        self.settings = settings or DeltaSettings()
        self.generation = 0  # bumped by force_resync: older tokens get 410 Gone
        self._rounds: OrderedDict[str, _Round] = OrderedDict()

    # ------------------------------------------------------------------ entry points

    def force_resync(self) -> None:
        """Every token handed out so far now answers ``410 Gone``: clients must start a full round."""
        self.generation += 1
        self._rounds.clear()

    def start(
        self, query: DeltaQuery, base: str, *, minimal: bool = False, page_size: int | None = None
    ) -> dict[str, Any]:
        """A first round: every live object of the kind (or of the filtered ids)."""
        with self.tenant.lock:
            live = self.tenant.live[query.kind]
            ids = list(live) if query.ids is None else [i for i in sorted(query.ids) if i in live]
            items: deque[Item] = deque(("full", object_id) for object_id in ids)
            return self._new_round(query, items, base, minimal, page_size)

    def latest(self, query: DeltaQuery, base: str) -> dict[str, Any]:
        """``$deltatoken=latest``: no objects, only a delta link from now on."""
        with self.tenant.lock:
            return self._final_page(query, self.tenant.sequence, [], base)

    def resume(
        self,
        query_from_url: DeltaQuery,
        token: str,
        base: str,
        *,
        minimal: bool = False,
        page_size: int | None = None,
    ) -> dict[str, Any]:
        """A later round from a ``$deltatoken``; ``minimal`` (``Prefer: return=minimal``) returns only the
        properties that changed ("Use delta query to track changes": https://learn.microsoft.com/graph/
        delta-query-overview#optional-query-parameters-and-headers)."""
        payload = self.signer.loads(token)
        if payload is None or payload.get("t") != "d":
            raise sync_state_not_found()
        query = DeltaQuery(
            kind=str(payload.get("k")),
            version=str(payload.get("v")),
            select=tuple(payload["sel"]) if payload.get("sel") is not None else None,
            ids=frozenset(payload["ids"]) if payload.get("ids") is not None else None,
        )
        if (query.kind, query.version) != (query_from_url.kind, query_from_url.version):
            raise sync_state_not_found()
        with self.tenant.lock:
            seq = self._check_delta_token(payload, query, base)
            items = self._changes_since(query, seq)
            return self._new_round(query, items, base, minimal, page_size)

    def next_page(
        self, query_from_url: DeltaQuery, token: str, base: str, *, page_size: int | None = None
    ) -> dict[str, Any]:
        """The next page of a round from a ``$skiptoken``; the page just served is served again on retry.
        ``page_size`` (this request's ``Prefer: odata.maxpagesize``) sizes this page and the round's next."""
        payload = self.signer.loads(token)
        if payload is None or payload.get("t") != "s":
            raise sync_state_not_found()
        if payload.get("e") != self.tenant.epoch:
            raise sync_state_not_found()
        round_ = self._rounds.get(str(payload.get("r")))
        if int(payload.get("g", -1)) < self.generation:
            raise self._gone(query_from_url, base)
        if round_ is None or (round_.query.kind, round_.query.version) != (
            query_from_url.kind,
            query_from_url.version,
        ):
            raise sync_state_not_found()
        page_no = int(payload.get("p", -1))
        self._rounds.move_to_end(round_.round_id)
        round_.touched = time.monotonic()
        if round_.last is not None and round_.last[0] == page_no:
            return round_.last[1]
        if page_no != round_.next_page:
            raise sync_state_not_found()
        if page_size is not None:
            round_.page_size = page_size
        with self.tenant.lock:
            return self._page(round_, base)

    def page_size(self, preferred: int | None) -> int:
        """Objects per page: ``Prefer: odata.maxpagesize`` when given, never above the default (a client
        can ask for smaller pages, not bigger ones)."""
        if preferred is None:
            return self.settings.page_size
        return max(1, min(preferred, self.settings.page_size))

    # ------------------------------------------------------------------ tokens

    def _delta_link(self, query: DeltaQuery, seq: int, base: str) -> str:
        token = self.signer.dumps(
            {
                "t": "d",
                "e": self.tenant.epoch,
                "s": seq,
                "g": self.generation,
                "k": query.kind,
                "v": query.version,
                "sel": list(query.select) if query.select is not None else None,
                "ids": sorted(query.ids) if query.ids is not None else None,
                "at": time.time(),
            }
        )
        return f"{base}/{query.version}/{query.collection}/delta?$deltatoken={token}"

    def _check_delta_token(self, payload: dict[str, Any], query: DeltaQuery, base: str) -> int:
        seq = payload.get("s")
        if not isinstance(seq, int):
            raise sync_state_not_found()
        if time.time() - float(payload.get("at", 0)) > self.settings.token_ttl:
            raise sync_state_not_found()
        if payload.get("e") == self.tenant.epoch:
            if int(payload.get("g", -1)) < self.generation:
                raise self._gone(query, base)
            if not self.tenant.log_base <= seq <= self.tenant.sequence:
                raise sync_state_not_found()
            return seq
        # A token from the run that saved this tenant, taken at exactly the saved state, still fits.
        if self.tenant.resumable == (payload.get("e"), seq):
            return self.tenant.log_base
        raise sync_state_not_found()

    def _gone(self, query: DeltaQuery, base: str) -> GraphApiError:
        params: dict[str, str] = {}
        if query.select is not None:
            params["$select"] = ",".join(query.select)
        if query.ids is not None:
            params["$filter"] = " or ".join(f"id eq '{i}'" for i in sorted(query.ids))
        params["$deltatoken"] = ""
        location = f"{base}/{query.version}/{query.collection}/delta?" + urllib.parse.urlencode(
            params, safe="$,'"
        )
        return GraphApiError(
            410,
            "resyncRequired",
            "Resync required: replace any local cached data with the data from a full delta round.",
            headers={"Location": location},
        )

    # ------------------------------------------------------------------ rounds and pages

    def _new_round(
        self,
        query: DeltaQuery,
        items: deque[Item],
        base: str,
        minimal: bool = False,
        page_size: int | None = None,
    ) -> dict[str, Any]:
        self._evict()
        round_ = _Round(secrets.token_hex(12), query, self.tenant.sequence, self.generation, items)
        round_.minimal = minimal
        round_.page_size = page_size
        self._rounds[round_.round_id] = round_
        return self._page(round_, base)

    def _evict(self) -> None:
        cutoff = time.monotonic() - self.settings.round_ttl
        while self._rounds:
            oldest = next(iter(self._rounds.values()))
            if len(self._rounds) < self.settings.max_rounds and oldest.touched >= cutoff:
                break
            self._rounds.popitem(last=False)

    def _changes_since(self, query: DeltaQuery, seq: int) -> deque[Item]:
        """Replay the log from ``seq``: changed objects in order of first change, with net member changes."""
        changed: dict[str, None] = {}
        touched: dict[str, dict[str, str | None]] = {}
        restored: set[str] = set()
        props: dict[str, set[str] | None] = {}
        kind, ids, with_members = query.kind, query.ids, query.with_members
        first_seq = max(seq, self.tenant.log_base)
        for offset, entry in enumerate(self.tenant.changes_since(seq)):
            entry_kind, object_id, op, member, member_kind = entry
            if entry_kind != kind or (ids is not None and object_id not in ids):
                continue
            if op != OP_MEMBER_ADD and op != OP_MEMBER_REMOVE:
                names = self.tenant.changed_props.get(first_seq + offset)
                if names is None:
                    props[object_id] = None
                elif props.get(object_id, set()) is not None:
                    props.setdefault(object_id, set()).update(names)  # type: ignore[union-attr]
            if op in (OP_MEMBER_ADD, OP_MEMBER_REMOVE):
                if not with_members or member is None:
                    continue  # without members in $select a membership change is not a group change
                touched.setdefault(object_id, {})[member] = member_kind
            elif op == OP_RESTORE:
                restored.add(object_id)
            changed.setdefault(object_id)
        items: deque[Item] = deque()
        for object_id in changed:
            adds: list[tuple[str, str | None]] = []
            removes: list[tuple[str, str | None]] = []
            current = self.tenant.members.get(object_id, {})
            for member, member_kind in touched.get(object_id, {}).items():
                if member in current and member not in self.tenant.deleted:
                    adds.append((member, member_kind))
                else:
                    removes.append((member, member_kind))
            items.append(
                ("chg", object_id, adds, removes, object_id in restored, props.get(object_id, set()))
            )
        return items

    def _render_object(
        self,
        query: DeltaQuery,
        object_id: str,
        changed: frozenset[str] | set[str] | None = None,
        minimal: bool = False,
    ) -> dict[str, Any] | None:
        """The object's current properties, or its ``@removed`` marker when it is gone.

        Delta always returns ``id``; a property never set is left out, one set to null since the last round
        is returned as null, and with ``minimal`` only the properties that changed are returned
        (https://learn.microsoft.com/graph/api/user-delta, "By default, requests using a deltaLink or
        nextLink return the same properties as selected in the initial delta query ...").
        """
        tenant = self.tenant
        obj = tenant.live[query.kind].get(object_id)
        if obj is None:
            reason = "changed" if object_id in tenant.deleted else "deleted"
            return {"id": object_id, "@removed": {"reason": reason}}
        select = None if query.select is None else tuple(p for p in query.select if p != "members")
        full = render(obj, query.kind, query.version, select)
        out: dict[str, Any] = {"id": object_id}
        for name, value in full.items():
            if name == "id":
                continue
            was_changed = changed is not None and name in changed
            if minimal and changed is not None and not was_changed:
                continue
            if obj.get(name) is None and not was_changed:
                continue
            out[name] = value
        return out

    def _all_member_entries(self, object_id: str) -> list[dict[str, Any]]:
        # The hot loop of a first round (a million entries at scale): one dict literal per member.
        kinds, types = self.tenant.kinds, _ODATA_TYPES
        return [{"@odata.type": types[kinds[m]], "id": m} for m in self.tenant.visible_members(object_id)]

    def _expand(
        self, query: DeltaQuery, item: Item, minimal: bool = False
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """An item -> (object JSON or None to skip, its member entries)."""
        tag, object_id = item[0], item[1]
        if tag == "full":
            if object_id not in self.tenant.live[query.kind]:
                return None, []  # deleted meanwhile: the next round reports it
            obj = self._render_object(query, object_id)
            return obj, self._all_member_entries(object_id) if query.with_members else []
        if tag == "slice":
            if object_id not in self.tenant.live[query.kind]:
                return None, []
            return self._render_object(query, object_id), list(item[2])
        restored, changed = item[4], item[5]
        obj = self._render_object(query, object_id, None if restored else changed, minimal)
        if obj is None or "@removed" in obj or not query.with_members:
            return obj, []
        if restored:  # comes back as new, with all its members
            return obj, self._all_member_entries(object_id)
        entries = [_member_entry(m, k, False) for m, k in item[2]]
        entries += [_member_entry(m, k, True) for m, k in item[3]]
        return obj, entries

    def _page(self, round_: _Round, base: str) -> dict[str, Any]:
        settings, query = self.settings, round_.query
        values: list[dict[str, Any]] = []
        members_on_page = 0
        page_size = self.page_size(round_.page_size)
        while len(values) < page_size:
            if not round_.items:
                if not round_.deferred:
                    break
                round_.items.extend(round_.deferred)
                round_.deferred.clear()
            item = round_.items.popleft()
            obj, entries = self._expand(query, item, round_.minimal)
            if obj is None:
                continue
            first, rest = entries[: settings.member_slice], entries[settings.member_slice :]
            if values and members_on_page + len(first) > settings.page_members:
                round_.items.appendleft(("slice", item[1], entries))  # does not fit: first on the next page
                break
            for start in range(0, len(rest), settings.member_slice):
                round_.deferred.append(("slice", item[1], rest[start : start + settings.member_slice]))
            if query.with_members and first:
                # A group without members carries no members@delta, even in a first round.
                obj["members@delta"] = first
            values.append(obj)
            members_on_page += len(first)
        page_no = round_.next_page
        round_.next_page += 1
        if round_.items or round_.deferred:
            token = self.signer.dumps(
                {
                    "t": "s",
                    "r": round_.round_id,
                    "p": round_.next_page,
                    "e": self.tenant.epoch,
                    "g": round_.generation,
                }
            )
            page = {
                "@odata.context": self._context(query, base),
                "@odata.nextLink": f"{base}/{query.version}/{query.collection}/delta?$skiptoken={token}",
                "value": values,
            }
        else:
            # The finished round stays (until evicted) so that a retry of this last page is answered.
            page = self._final_page(query, round_.end_seq, values, base)
        round_.last = (page_no, page)
        return page

    def _final_page(
        self, query: DeltaQuery, seq: int, values: Sequence[dict[str, Any]], base: str
    ) -> dict[str, Any]:
        return {
            "@odata.context": self._context(query, base),
            "@odata.deltaLink": self._delta_link(query, seq, base),
            "value": list(values),
        }

    @staticmethod
    def _context(query: DeltaQuery, base: str) -> str:
        return context_url(base, query.version, query.collection, query.select)
