"""An in-memory :class:`~writeback.core.ports.ReplicaStore`: the reference behaviour of the cloud replica.

Used by unit tests of the engine and the Graph adapter; the SQLite store implements the same semantics:

- ``upsert_*`` stores the object as given (a restored object arrives with ``deleted=False``). A group's
  ``members`` field is ignored: members change only through ``add_members``, ``remove_members`` and
  ``clear_members``, and survive an upsert.
- ``remove_*(hard=False)`` marks a known object soft-deleted and keeps it (and a group's members); an unknown
  id is ignored, since there is nothing to keep. ``hard=True`` forgets the object (and a group's members).
- Member changes for a group not (yet) stored are kept and show up once the group is upserted.
- ``reset(resource)`` forgets every user, or every group with its members; delta links are left to the caller.
- A transaction applies writes directly and keeps an undo log (the old value of each key on first touch);
  leaving the ``with`` block by an exception restores them. One transaction at a time.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Iterable
from typing import Final, TypeVar

from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, MemberRef
from writeback.errors import StateError

RESOURCES: Final = ("users", "groups")

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Missing:
    """Marks "the key did not exist" in the undo log."""


_MISSING: Final = _Missing()


class MemoryReplica:
    """Dict-backed replica. ``snapshot()`` returns immutable values (members as frozensets)."""

    def __init__(self) -> None:
        self.users: dict[str, CloudUser] = {}
        self.groups: dict[str, CloudGroup] = {}
        self.members: dict[str, set[MemberRef]] = {}
        self.delta_links: dict[str, str] = {}
        self.unified_writeback_default: bool | None = None
        self.delta_queries: dict[str, str] = {}
        self._lock = threading.Lock()
        self._active: MemoryTransaction | None = None
        self.commits = 0  # for tests: how many transactions committed
        self.pending: set[str] = set()  # groups marked changed by committed rounds (see ReplicaTransaction)

    def transaction(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    def get_delta_link(self, resource: str) -> str | None:
        _check_resource(resource)
        return self.delta_links.get(resource)

    def get_unified_writeback_default(self) -> bool | None:
        return self.unified_writeback_default

    def get_delta_query(self, resource: str) -> str | None:
        _check_resource(resource)
        return self.delta_queries.get(resource)

    def snapshot(self, member_groups: Collection[str] | None = None) -> CloudSnapshot:
        with self._lock:
            wanted = self.groups.keys() if member_groups is None else set(member_groups)
            groups = {
                gid: dataclasses.replace(
                    group, members=frozenset(self.members.get(gid, ())) if gid in wanted else frozenset()
                )
                for gid, group in self.groups.items()
            }
            default = self.unified_writeback_default
            if member_groups is None:
                return CloudSnapshot(users=dict(self.users), groups=groups, unified_writeback_default=default)
            ids = {m.id for gid in wanted for m in self.members.get(gid, ()) if m.kind == "user"}
            users = {u: self.users[u] for u in ids if u in self.users}
            return CloudSnapshot(users=users, groups=groups, unified_writeback_default=default)


def _check_resource(resource: str) -> None:
    if resource not in RESOURCES:
        raise StateError(f"unknown replica resource {resource!r}; expected one of {', '.join(RESOURCES)}")


class MemoryTransaction:
    """One atomic round of replica writes; commits on normal exit, rolls back on exception."""

    def __init__(self, replica: MemoryReplica) -> None:
        self._replica = replica
        self._open = False
        self._undo_users: dict[str, CloudUser | _Missing] = {}
        self._undo_groups: dict[str, CloudGroup | _Missing] = {}
        self._undo_members: dict[str, set[MemberRef] | _Missing] = {}
        self._undo_links: dict[str, str | _Missing] = {}
        self._undo_default: tuple[bool | None] | None = None  # (old value,) once touched
        self._undo_queries: dict[str, str | _Missing] = {}
        self._marks: set[str] = set()

    def __enter__(self) -> MemoryTransaction:
        replica = self._replica
        with replica._lock:
            if replica._active is not None:
                raise StateError("a replica transaction is already open; nesting is not supported")
            replica._active = self
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        replica = self._replica
        with replica._lock:
            try:
                if exc and exc[0] is not None:
                    _restore(replica.users, self._undo_users)
                    _restore(replica.groups, self._undo_groups)
                    _restore(replica.members, self._undo_members)
                    _restore(replica.delta_links, self._undo_links)
                    _restore(replica.delta_queries, self._undo_queries)
                    if self._undo_default is not None:
                        replica.unified_writeback_default = self._undo_default[0]
                else:
                    replica.commits += 1
                    replica.pending |= self._marks
            finally:
                replica._active = None
                self._open = False

    # -- writes ---------------------------------------------------------------------------------------------

    def set_delta_link(self, resource: str, link: str | None) -> None:
        _check_resource(resource)
        self._save(self._replica.delta_links, self._undo_links, resource)
        if link is None:
            self._replica.delta_links.pop(resource, None)
        else:
            self._replica.delta_links[resource] = link

    def set_delta_query(self, resource: str, query: str) -> None:
        _check_resource(resource)
        self._save(self._replica.delta_queries, self._undo_queries, resource)
        self._replica.delta_queries[resource] = query

    def set_unified_writeback_default(self, value: bool | None) -> None:
        self._require_open()
        if self._undo_default is None:
            self._undo_default = (self._replica.unified_writeback_default,)
        self._replica.unified_writeback_default = value

    def upsert_user(self, user: CloudUser) -> None:
        self._save(self._replica.users, self._undo_users, user.id)
        self._replica.users[user.id] = user

    def remove_user(self, user_id: str, *, hard: bool) -> None:
        self._require_open()
        users = self._replica.users
        if user_id not in users:
            return
        self._save(users, self._undo_users, user_id)
        if hard:
            del users[user_id]
        else:
            users[user_id] = dataclasses.replace(users[user_id], deleted=True)

    def upsert_group(self, group: CloudGroup) -> None:
        self._save(self._replica.groups, self._undo_groups, group.id)
        self._replica.groups[group.id] = dataclasses.replace(group, members=frozenset())

    def remove_group(self, group_id: str, *, hard: bool) -> None:
        self._require_open()
        groups = self._replica.groups
        if hard:
            self._save(groups, self._undo_groups, group_id)
            self._save_members(group_id)
            groups.pop(group_id, None)
            self._replica.members.pop(group_id, None)
        elif group_id in groups:
            self._save(groups, self._undo_groups, group_id)
            groups[group_id] = dataclasses.replace(groups[group_id], deleted=True)

    def add_members(self, group_id: str, members: Iterable[MemberRef]) -> None:
        self._save_members(group_id)
        self._replica.members.setdefault(group_id, set()).update(members)

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        self._require_open()
        current = self._replica.members.get(group_id)
        if not current:
            return
        gone = set(member_ids)
        self._save_members(group_id)
        current.difference_update({ref for ref in current if ref.id in gone})

    def clear_members(self, group_id: str) -> None:
        self._save_members(group_id)
        self._replica.members.pop(group_id, None)

    def mark_changed(self, resource: str, ids: Collection[str]) -> None:
        self._require_open()
        _check_resource(resource)
        wanted = set(ids)
        self._marks |= wanted if resource == "groups" else set()
        members = self._replica.members
        self._marks |= {gid for gid, refs in members.items() if any(m.id in wanted for m in refs)}

    def reset(self, resource: str) -> None:
        _check_resource(resource)
        replica = self._replica
        if resource == "users":
            for user_id in list(replica.users):
                self._save(replica.users, self._undo_users, user_id)
            replica.users.clear()
        else:
            for group_id in list(replica.groups):
                self._save(replica.groups, self._undo_groups, group_id)
            for group_id in list(replica.members):
                self._save_members(group_id)
            replica.groups.clear()
            replica.members.clear()

    # -- undo log -------------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._open:
            raise StateError(
                "replica writes need an open transaction: use 'with replica.transaction() as tx'"
            )

    def _save(self, data: dict[_K, _V], undo: dict[_K, _V | _Missing], key: _K) -> None:
        self._require_open()
        if key not in undo:
            undo[key] = data.get(key, _MISSING)

    def _save_members(self, group_id: str) -> None:
        self._require_open()
        if group_id not in self._undo_members:
            current = self._replica.members.get(group_id)
            self._undo_members[group_id] = _MISSING if current is None else set(current)


def _restore(data: dict[_K, _V], undo: dict[_K, _V | _Missing]) -> None:
    for key, old in undo.items():
        if isinstance(old, _Missing):
            data.pop(key, None)
        else:
            data[key] = old
