"""The replica part of the SQL state store (ports.Replica): the cloud replica written by Graph delta rounds,
its snapshots, the lookups a partial plan makes, and the cache of AD users for on-prem dynamic groups."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import fields
from typing import Any

from writeback.adapters.state.sqlcore import _UPSERT_META, SqlCore, upsert
from writeback.core.desired import account_keys
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, FrozenAttributes, MemberRef
from writeback.errors import StateCorruptError, StateError

# Tables that mirror Graph; everything in them can be fetched again (`writeback state rebuild-replica`).
REPLICA_TABLES = ("users", "groups", "members", "delta_links")
REBUILD_HINT = (
    "run 'writeback state rebuild-replica' to rebuild the cloud replica from Microsoft Graph "
    "(the provisioning log is kept)"
)

_UPSERT_USER = upsert("users", ("id", "data", "deleted", "account_sid", "account_guid"), ("id",))
_UPSERT_GROUP = upsert("groups", ("id", "data", "deleted"), ("id",))
_UPSERT_MEMBER = upsert("members", ("group_id", "member_id", "kind"), ("group_id", "member_id"))
_UPSERT_DELTA = upsert("delta_links", ("resource", "link"), ("resource",))
_UPSERT_AD_USER = upsert("ad_users", ("guid", "data"), ("guid",))
# The tenant's NewUnifiedGroupWritebackDefault as last synced from Graph ("true", "false", NULL when not set).
UNIFIED_DEFAULT_KEY = "unified_writeback_default"
# What each resource's delta link was made for (API version and $select): another query needs a full round.
DELTA_QUERY_KEY = "delta_query:"
# The replica's secondary indexes (schema migrations 1 and 7), by the table a full round empties and fills
# again: SQLite drops them for the round and builds them again, from their own SQL in the schema, once the round
# is stored (_Tx.reset).
_ROUND_INDEXES = {
    "groups": ("members_by_member",),
    "users": ("users_by_account_sid", "users_by_account_guid"),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


_USER_FIELDS = tuple(f.name for f in fields(CloudUser))
_GROUP_FIELDS = tuple(f.name for f in fields(CloudGroup) if f.name != "members")


def _user_to_json(u: CloudUser) -> str:
    # Not dataclasses.asdict: it deep-copies recursively and dominated the first sync of big tenants.
    return json.dumps({f: getattr(u, f) for f in _USER_FIELDS}, separators=(",", ":"), default=_jsonable)


def _account_columns(user: CloudUser) -> tuple[str | None, str | None]:
    """The users table's (account_sid, account_guid) of ``user``: its AD account keys (one rule:
    :func:`~writeback.core.desired.account_keys`), the GUID lower-cased as :meth:`SqlStore.cloud_users_with_keys`
    looks it up (``account_keys`` gives the uuid module's lower-case form already)."""
    sid, guid = account_keys(user)
    return sid, guid.lower() if guid else None


def _group_to_json(g: CloudGroup) -> str:
    d = {f: getattr(g, f) for f in _GROUP_FIELDS}
    d["group_types"] = list(g.group_types)
    return json.dumps(d, separators=(",", ":"), default=_jsonable)


class _Interned(dict[str, str]):
    """One copy of each string given (attribute names and many values repeat in every user's JSON, and
    json.loads makes new strings for each). A plain dict rather than sys.intern: it is dropped with the
    snapshot's construction instead of growing the interpreter's table. Also one name index per set of
    property names, shared by the users' :class:`FrozenAttributes`."""

    def __init__(self) -> None:
        super().__init__()
        self._indexes: dict[tuple[str, ...], dict[str, int]] = {}

    def __missing__(self, key: str) -> str:
        self[key] = key
        return key

    def attributes(self, attributes: Mapping[str, Any]) -> FrozenAttributes:
        """``attributes`` (a user's other properties, as decoded) with one copy of each name and string value."""
        names = tuple(self[k] for k in attributes)
        index = self._indexes.get(names)
        if index is None:
            index = self._indexes[names] = {name: i for i, name in enumerate(names)}
        return FrozenAttributes(index, tuple(self[v] if type(v) is str else v for v in attributes.values()))


class MemberRefs:
    """One :class:`MemberRef` per member id and one copy of each id and kind, for a whole snapshot."""

    def __init__(self) -> None:
        self._refs: dict[str, MemberRef] = {}
        self._kinds = _Interned()

    def get(self, kind: str, member_id: str) -> MemberRef:
        ref = self._refs.get(member_id)
        if ref is None or ref.kind != kind:
            ref = self._refs[member_id] = MemberRef(self._kinds[kind], member_id)
        return ref

    def id(self, object_id: str) -> str:
        """``object_id`` as the string the member values already hold, when a group has it as a member."""
        ref = self._refs.get(object_id)
        return object_id if ref is None else ref.id


def _user_from_json(
    text: str, deleted: int, keys: _Interned | None = None, object_id: str | None = None
) -> CloudUser:
    d = json.loads(text)
    d["deleted"] = bool(deleted)
    if object_id is not None and d.get("id") == object_id:
        d["id"] = object_id
    if keys is not None:
        # Names, departments, job titles and the domain repeat across users: one copy of each string.
        if isinstance(attributes := d.get("attributes"), dict):
            d["attributes"] = keys.attributes(attributes)
        if type(domain := d.get("on_premises_domain_name")) is str:
            d["on_premises_domain_name"] = keys[domain]
        # A user's UPN is often its mail and onPremisesUserPrincipalName too: one string for the three.
        if type(upn := d.get("user_principal_name")) is str:
            d["user_principal_name"] = keys[upn]
    return CloudUser(**d)


def _group_from_json(
    text: str, deleted: int, members: frozenset[MemberRef], object_id: str | None = None
) -> CloudGroup:
    d = json.loads(text)
    d["group_types"] = tuple(d.get("group_types") or ())
    d["proxy_addresses"] = tuple(d.get("proxy_addresses") or ())
    d["deleted"] = bool(deleted)
    d["members"] = members
    if object_id is not None and d.get("id") == object_id:
        d["id"] = object_id
    return CloudGroup(**d)


def _corrupt_row(where: str, table: str, row_id: Any, exc: Exception) -> StateCorruptError:
    return StateCorruptError(
        f"state store {where}: the {table} row {row_id!r} of the cloud replica is damaged "
        f"({type(exc).__name__}: {exc}); {REBUILD_HINT}"
    )


class _Tx:
    """ReplicaTransaction over one connection."""

    def __init__(self, store: ReplicaSql) -> None:
        self.store = store
        self.db = store.db
        self._dropped: list[str] = []  # the CREATE INDEX statements of the indexes to build again (see reset)

    def __enter__(self) -> _Tx:
        self.store.begin_write()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.store.rollback()  # with the indexes dropped by reset: DDL is transactional in SQLite
        else:
            try:
                self._indexed()
            except BaseException:
                self.store.rollback()  # never a replica without its indexes (a full disk, an interrupt)
                raise
            self.db.execute("COMMIT")

    def _indexed(self) -> None:
        """Build again the indexes :meth:`reset` dropped: before anything looks rows up by them."""
        dropped, self._dropped = self._dropped, []
        for create in dropped:
            self.db.execute(create)

    def set_delta_link(self, resource: str, link: str | None) -> None:
        self.db.execute(_UPSERT_DELTA, (resource, link))

    def set_delta_query(self, resource: str, query: str) -> None:
        self.db.execute(_UPSERT_META, (DELTA_QUERY_KEY + resource, query))

    def set_unified_writeback_default(self, value: bool | None) -> None:
        text = None if value is None else str(value).lower()
        self.db.execute(_UPSERT_META, (UNIFIED_DEFAULT_KEY, text))

    def upsert_user(self, user: CloudUser) -> None:
        # The account key columns are written with the JSON they come from, so they never disagree with it.
        sid, guid = _account_columns(user)
        self.db.execute(_UPSERT_USER, (user.id, _user_to_json(user), int(user.deleted), sid, guid))

    def remove_user(self, user_id: str, *, hard: bool) -> None:
        # A soft delete keeps the row's data and so its account keys: a deleted user is still found by them.
        if hard:
            self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        else:
            self.db.execute("UPDATE users SET deleted = 1 WHERE id = ?", (user_id,))

    def upsert_group(self, group: CloudGroup) -> None:
        self.db.execute(_UPSERT_GROUP, (group.id, _group_to_json(group), int(group.deleted)))

    def remove_group(self, group_id: str, *, hard: bool) -> None:
        if hard:
            self.db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
            self.db.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
        else:
            self.db.execute("UPDATE groups SET deleted = 1 WHERE id = ?", (group_id,))

    def add_members(self, group_id: str, members: Iterable[MemberRef]) -> None:
        rows = [(group_id, m.id, m.kind) for m in members]
        if rows:
            self.db.executemany(_UPSERT_MEMBER, rows)

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        rows = [(group_id, m) for m in member_ids]
        if rows:
            self.db.executemany("DELETE FROM members WHERE group_id = ? AND member_id = ?", rows)

    def clear_members(self, group_id: str) -> None:
        self.db.execute("DELETE FROM members WHERE group_id = ?", (group_id,))

    def mark_changed(self, resource: str, ids: Collection[str]) -> None:
        self._indexed()  # the groups holding these ids: by members_by_member
        self.store.mark_groups(resource, ids)

    def reset(self, resource: str) -> None:
        if resource == "users":
            # The account key columns go with their rows; the users written after come through upsert_user.
            self.db.execute("DELETE FROM users")
        elif resource == "groups":
            self.db.execute("DELETE FROM groups")
            self.db.execute("DELETE FROM members")
        else:
            raise StateError(f"unknown replica resource {resource!r}")
        if self.store.dialect == "sqlite":
            # A full round writes every row again, in Graph's order: each row into a secondary index of random
            # keys costs a B-tree insert whose pages mostly miss SQLite's page cache. Building the index once
            # the rows are in sorts them instead: a full read's CPU a third lower at 1,000,000 memberships
            # (docs/benchmarks.md, "a cheaper first read and plan"). Dropped inside the transaction, so a
            # rollback (a crash, a failed round) restores them, and other connections (WAL) keep reading the
            # committed replica with its indexes. Not on PostgreSQL: DROP INDEX locks the table against readers
            # until the commit.
            for name in _ROUND_INDEXES[resource]:
                row = self.db.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                ).fetchone()
                if row is not None:  # None: dropped already by this transaction
                    self.db.execute(f"DROP INDEX {name}")  # a constant name (_ROUND_INDEXES)
                    self._dropped.append(row[0])


class ReplicaSql(SqlCore):
    """ports.Replica (with ports.ReplicaStore and ports.UserCache) over the store's connection."""

    def transaction(self) -> _Tx:
        return _Tx(self)

    def get_delta_link(self, resource: str) -> str | None:
        row = self.db.execute("SELECT link FROM delta_links WHERE resource = ?", (resource,)).fetchone()
        return row[0] if row else None

    def get_delta_query(self, resource: str) -> str | None:
        return self.get_meta(DELTA_QUERY_KEY + resource)

    def get_unified_writeback_default(self) -> bool | None:
        value = self.get_meta(UNIFIED_DEFAULT_KEY)
        return None if value is None else value == "true"

    def has_synced(self) -> bool:
        rows = self.db.execute("SELECT COUNT(*) FROM delta_links WHERE link IS NOT NULL").fetchone()
        return bool(rows[0] >= 2)

    def find_user(self, wanted: str) -> CloudUser | None:
        row = self.db.execute("SELECT id, data, deleted FROM users WHERE id = ?", (wanted,)).fetchone()
        if row is not None:
            return _user_from_json(row[1], row[2], object_id=row[0])
        upn = wanted.lower()
        for r in self.db.execute("SELECT id, data, deleted FROM users"):
            user = _user_from_json(r[1], r[2], object_id=r[0])
            if (user.user_principal_name or "").lower() == upn:
                return user
        return None

    def search_users(self, text: str, limit: int = 50) -> list[CloudUser]:
        """Live users whose display name or userPrincipalName contains ``text`` (any case), or whose id it
        is: the console's user search. A scan of the users, once per search, as :meth:`find_user` does."""
        needle = text.strip().lower()
        found: list[tuple[bool, str, CloudUser]] = []
        for r in self.db.execute("SELECT id, data, deleted FROM users WHERE deleted = 0"):
            user = _user_from_json(r[1], r[2], object_id=r[0])
            keys = (
                user.id.lower(),
                (user.display_name or "").lower(),
                (user.user_principal_name or "").lower(),
            )
            if needle and (needle == keys[0] or needle in keys[1] or needle in keys[2]):
                found.append((needle not in keys, keys[1], user))  # exact matches first, then by name
        found.sort(key=lambda f: f[:2])
        return [user for _, _, user in found[:limit]]

    def snapshot(self, member_groups: Collection[str] | None = None) -> CloudSnapshot:
        if member_groups is None:
            member_rows: Iterable[Any] = self.db.execute("SELECT group_id, member_id, kind FROM members")
        else:
            member_rows = self._select_in(
                "SELECT group_id, member_id, kind FROM members WHERE group_id", member_groups
            )
        # Memory (issue 17: 1,000,000 memberships of 100,000 users): every member is one MemberRef, shared by
        # all the groups that hold it, instead of one new value (and two new strings) per membership row.
        refs = MemberRefs()
        members: dict[str, list[MemberRef]] = {}
        for gid, mid, kind in member_rows:
            ref = refs.get(kind, mid)
            held = members.get(gid)
            if held is None:
                members[gid] = [ref]
            else:
                held.append(ref)
        if member_groups is None:
            user_rows: Iterable[Any] = self.db.execute("SELECT id, data, deleted FROM users")
        else:
            wanted = {m.id for refs_ in members.values() for m in refs_ if m.kind == "user"}
            user_rows = self._select_in("SELECT id, data, deleted FROM users WHERE id", wanted)
        users: dict[str, CloudUser] = {}
        keys = _Interned()
        for r in user_rows:
            try:
                user_id = refs.id(r[0])
                users[user_id] = _user_from_json(r[1], r[2], keys, user_id)
            except (ValueError, TypeError, KeyError) as exc:
                raise _corrupt_row(self.where, "users", r[0], exc) from exc
        groups: dict[str, CloudGroup] = {}
        for r in self.db.execute("SELECT id, data, deleted FROM groups"):
            try:
                group_id = refs.id(r[0])
                groups[group_id] = _group_from_json(r[1], r[2], frozenset(members.pop(r[0], ())), group_id)
            except (ValueError, TypeError, KeyError) as exc:
                raise _corrupt_row(self.where, "groups", r[0], exc) from exc
        return CloudSnapshot(
            users=users, groups=groups, unified_writeback_default=self.get_unified_writeback_default()
        )

    def reset_replica(self) -> None:
        """Forget the cloud replica and its delta links (the next sync reads everything from Graph again).

        The provisioning log, the last-applied state and the AD users cache are kept."""
        with self.batch():
            for table in REPLICA_TABLES:
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names

    def groups_with_members(self, member_ids: Iterable[str]) -> set[str]:
        return {
            r[0] for r in self._select_in("SELECT DISTINCT group_id FROM members WHERE member_id", member_ids)
        }

    def users_by_id(self, user_ids: Iterable[str]) -> dict[str, CloudUser]:
        """The replica's users of these ids (soft-deleted ones included), by the primary key in chunks."""
        out: dict[str, CloudUser] = {}
        for r in self._select_in("SELECT id, data, deleted FROM users WHERE id", set(user_ids)):
            try:
                out[r[0]] = _user_from_json(r[1], r[2], object_id=r[0])
            except (ValueError, TypeError, KeyError) as exc:
                raise _corrupt_row(self.where, "users", r[0], exc) from exc
        return out

    def groups_of_members(self, member_ids: Iterable[str]) -> dict[str, set[str]]:
        """Member id -> the groups holding it directly (members without a group are left out), by the
        members_by_member index."""
        out: dict[str, set[str]] = {}
        for group_id, member_id in self._select_in(
            "SELECT group_id, member_id FROM members WHERE member_id", set(member_ids)
        ):
            out.setdefault(member_id, set()).add(group_id)
        return out

    def cloud_users_with_keys(self, sids: Collection[str], guids: Collection[str]) -> set[str]:
        """Ids of the replica users (soft-deleted ones included) with these account keys, by the indexed
        account_sid / account_guid columns in bounded chunks: the cost is that of the keys asked for, and no
        user's JSON is decoded. SIDs match case-insensitively as upper case, GUIDs as lower case."""
        found = {
            r[0] for r in self._select_in("SELECT id FROM users WHERE account_sid", {s.upper() for s in sids})
        }
        found.update(
            r[0]
            for r in self._select_in("SELECT id FROM users WHERE account_guid", {g.lower() for g in guids})
        )
        return found

    def mark_groups(self, resource: str, ids: Collection[str]) -> None:
        """Mark pending (inside the caller's transaction) the groups these users or groups are or belong to:
        a changed group, and every group holding a changed user or group (a nested group's parents)."""
        if not ids:
            return
        groups = set(ids) if resource == "groups" else set()
        self._mark(groups | self.groups_with_members(ids))

    # AD users (on-prem dynamic groups) -----------------------------------------------------------------------
    def put_ad_users(
        self,
        users: Iterable[dict[str, Any]],
        *,
        replace: bool,
        usn: int,
        dc: str | None = None,
        removed: Iterable[str] = (),
    ) -> None:
        """Store users read from AD (all of them when ``replace``), forget the ``removed`` objectGUIDs (users
        deleted in AD), and keep the watermark: the USN the read started at and the invocationId of the DC
        that USN belongs to."""
        rows = [(u["id"], json.dumps(u, separators=(",", ":"))) for u in users if u.get("id")]
        gone = [(g,) for g in removed]
        with self.batch():
            if replace:
                self.db.execute("DELETE FROM ad_users")
            if rows:
                self.db.executemany(_UPSERT_AD_USER, rows)
            if gone:
                self.db.executemany("DELETE FROM ad_users WHERE guid = ?", gone)
            self.set_meta("ad_users_usn", str(usn))
            self.set_meta("ad_users_dc", dc)

    def ad_users(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT data FROM ad_users")]

    def ad_users_usn(self) -> int | None:
        value = self.get_meta("ad_users_usn")
        return int(value) if value else None

    def ad_users_watermark(self) -> tuple[str, int] | None:
        """(invocationId, USN) of the last read of AD users; None before the first read, and for a cache
        written before the DC was recorded (its USN cannot be trusted on any DC: the next read is full)."""
        usn, dc = self.ad_users_usn(), self.get_meta("ad_users_dc")
        return (dc, usn) if usn is not None and dc else None
