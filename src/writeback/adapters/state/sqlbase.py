"""What the SQLite and PostgreSQL state stores share: every query, the migrations and the leader lease.

Both backends run the same SQL, written with ``?`` placeholders and the upsert both understand (``INSERT ...
ON CONFLICT (key) DO UPDATE SET col = excluded.col``, SQLite >= 3.24); the PostgreSQL connection rewrites the
placeholders to psycopg's ``%s``. A subclass supplies the connection (its errors already translated into the
StateError branch), its :mod:`~writeback.adapters.state.schema` dialect, how a write transaction begins, and
the database's clock as an SQL expression (the lease's times are the database's, never a server's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from writeback.adapters.state.schema import (
    ACCOUNT_KEYS_VERSION,
    MIGRATIONS,
    Dialect,
    migrations_table,
    statements,
)
from writeback.core.desired import account_keys
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, MemberRef
from writeback.core.ports import INTERRUPTED, PENDING, LogRecord, PendingGroups
from writeback.errors import StateCorruptError, StateError, StateSchemaError

# Tables that mirror Graph; everything in them can be fetched again (`writeback state rebuild-replica`).
REPLICA_TABLES = ("users", "groups", "members", "delta_links")
# Every table a state holds, in an order that `writeback state migrate` can copy them in.
ALL_TABLES = (
    "users",
    "groups",
    "members",
    "delta_links",
    "log",
    "applied",
    "meta",
    "ad_users",
    "fingerprints",
    "pending",
    "stamps",
    "leases",
)
REBUILD_HINT = (
    "run `writeback state rebuild-replica` to rebuild the cloud replica from Microsoft Graph "
    "(the provisioning log is kept)"
)


class Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The little of a DB-API connection the stores use; errors come out as StateError."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def close(self) -> None: ...


def upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column: the upsert both databases run."""
    rest = [c for c in columns if c not in key]
    action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
    # Called with this module's constant names only.
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
    return f"{insert} ON CONFLICT ({', '.join(key)}) {action}"


_UPSERT_USER = upsert("users", ("id", "data", "deleted", "account_sid", "account_guid"), ("id",))
_UPSERT_GROUP = upsert("groups", ("id", "data", "deleted"), ("id",))
_UPSERT_MEMBER = upsert("members", ("group_id", "member_id", "kind"), ("group_id", "member_id"))
_UPSERT_DELTA = upsert("delta_links", ("resource", "link"), ("resource",))
_UPSERT_META = upsert("meta", ("key", "value"), ("key",))
_UPSERT_PENDING = upsert("pending", ("group_id", "seq"), ("group_id",))
_UPSERT_STAMP = upsert("stamps", ("cloud_id", "dn", "usn"), ("cloud_id",))
# The pending marks' counter: the row lock this UPDATE takes orders concurrent rounds (PostgreSQL), so a mark
# made while a reconcile runs always gets a number above the one that reconcile read.
_NEXT_PENDING_SEQ = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'pending_seq' RETURNING value"
_UPSERT_AD_USER = upsert("ad_users", ("guid", "data"), ("guid",))
_UPSERT_APPLIED = upsert("applied", ("cloud_id", "dn", "time"), ("cloud_id",))
_UPSERT_PRINT = upsert("fingerprints", ("cloud_id", "fingerprint"), ("cloud_id",))
# The tenant's NewUnifiedGroupWritebackDefault as last synced from Graph ("true", "false", NULL when not set).
UNIFIED_DEFAULT_KEY = "unified_writeback_default"
# What each resource's delta link was made for (API version and $select): another query needs a full round.
DELTA_QUERY_KEY = "delta_query:"


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
    snapshot's construction instead of growing the interpreter's table."""

    def __missing__(self, key: str) -> str:
        self[key] = key
        return key


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
            d["attributes"] = {keys[k]: keys[v] if type(v) is str else v for k, v in attributes.items()}
        if type(domain := d.get("on_premises_domain_name")) is str:
            d["on_premises_domain_name"] = keys[domain]
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


@dataclass(frozen=True)
class LogEntry:
    id: int
    time: float
    run_id: str
    cloud_id: str | None
    group_name: str | None
    dn: str | None
    action: str
    result: str
    error: str | None
    detail: dict[str, Any] | None
    actor: str | None = None  # who asked for it (an operator's action); None for the engine's own rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogQuery:
    """The provisioning log filters of the console and `/api/log` (all optional, combined with AND)."""

    since: float | None = None
    until: float | None = None
    result: str | None = None
    action: str | None = None
    text: str | None = None  # group/identity: cloud id exactly, or part of the group name or DN
    run_id: str | None = None
    limit: int = 100
    offset: int = 0


INTERRUPTED_MESSAGE = (
    "the run stopped (killed or crashed) while this change was being written to AD: it may or may not have "
    "been applied; the next apply planned from what AD then held and finished it"
)

_LOG_COLUMNS = "id, time, run_id, cloud_id, group_name, dn, action, result, error, detail, actor"


def _log_entry(r: Any) -> LogEntry:
    detail = json.loads(r[9]) if r[9] else None
    return LogEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], detail, r[10])


@dataclass(frozen=True)
class LeaseGrant:
    """A lease held: its fencing token and how long it still runs, in seconds, by the database's clock."""

    token: int
    remaining: float


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease (``remaining`` <= 0: it has run out and is free to take)."""

    holder: str
    token: int
    remaining: float


class _Tx:
    """ReplicaTransaction over one connection."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.db = store.db

    def __enter__(self) -> _Tx:
        self.store.begin_write()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.store.rollback()
        else:
            self.db.execute("COMMIT")

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


class SqlStore:
    """ports.ReplicaStore, the engine's Store and the leader lease over one SQL connection (see module doc)."""

    db: Connection
    dialect: Dialect
    # What messages call the store: a file path, or a PostgreSQL URL without its password.
    where: str
    # The database's clock, Unix seconds, as an SQL expression.
    now_sql: str
    # Case-insensitive LIKE (SQLite's LIKE already is for ASCII; PostgreSQL's is not).
    like: str = "LIKE"

    # -- what a backend provides ----------------------------------------------------------------------------
    def begin_write(self) -> None:
        """Start a transaction that writes (SQLite takes its write lock at once)."""
        self.db.execute("BEGIN")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    def lock_schema(self) -> None:
        """Inside the migration transaction: keep other processes from migrating at the same time."""

    # -- schema ---------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the migrations this state lacks, all in one transaction; refuse a schema from a newer writeback.

        A current schema is seen without a write transaction, so opening a state to read it never waits for a
        writer."""
        try:
            known = {r[0] for r in self.db.execute("SELECT version FROM schema_migrations").fetchall()}
        except StateError:
            known = set()  # a new state: no migrations table yet
        if known == set(range(1, len(MIGRATIONS) + 1)):
            return
        self.begin_write()
        try:
            self.lock_schema()
            self.db.execute(migrations_table(self.dialect))
            done = {r[0] for r in self.db.execute("SELECT version FROM schema_migrations")}
            newest = max(done, default=0)
            if newest > len(MIGRATIONS):
                raise StateSchemaError(
                    f"state store {self.where} has schema version {newest}, written by a newer writeback; this "
                    f"version knows versions up to {len(MIGRATIONS)}. Run the newer writeback again, or point "
                    "the [state] settings at a new, empty state (a full reconcile adopts the AD groups by "
                    "their anchors)"
                )
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in statements(script, self.dialect):
                    self.db.execute(statement)
                if version == ACCOUNT_KEYS_VERSION:
                    self._fill_account_keys()
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
        except BaseException:
            self.rollback()
            raise
        self.db.execute("COMMIT")

    def _fill_account_keys(self, page: int = 1000) -> None:
        """Migration 7, inside its transaction: fill the new account key columns of the users already in the
        replica, computed from their JSON by the same rule as every later write (see schema.ACCOUNT_KEYS_VERSION
        for why not in SQL). A state upgrades in place: nothing is fetched again from Graph.

        Read a page of rows at a time, in id order (bounded memory at any replica size). A row whose JSON is
        damaged keeps NULL keys rather than stopping the upgrade: the snapshot reports that row with the
        rebuild command, and `writeback state rebuild-replica`, which needs the upgraded state, rewrites it."""
        after = ""
        while True:
            rows = self.db.execute(
                "SELECT id, data, deleted FROM users WHERE id > ? ORDER BY id LIMIT ?", (after, page)
            ).fetchall()
            if not rows:
                return
            keys: list[tuple[str | None, str | None, str]] = []
            for user_id, data, deleted in rows:
                try:
                    keys.append((*_account_columns(_user_from_json(data, deleted)), user_id))
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue
            if keys:
                self.db.executemany("UPDATE users SET account_sid = ?, account_guid = ? WHERE id = ?", keys)
            after = rows[-1][0]

    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self.db.close()

    # ReplicaStore ---------------------------------------------------------------------------------------
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

    def _select_in(self, query: str, values: Iterable[str], chunk: int = 500) -> Iterator[Any]:
        """Rows of ``<query> IN (...)`` over ``values``, in chunks (SQLite caps the number of parameters).

        ``query`` is always a constant of this module; the values are bound, never interpolated.
        """
        ids = list(values)
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            yield from self.db.execute(f"{query} IN ({','.join('?' * len(part))})", part).fetchall()

    # Meta -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        self.db.execute(_UPSERT_META, (key, value))

    def write_meta(self, values: Mapping[str, str | None]) -> None:
        with self.batch():
            for key, value in values.items():
                self.set_meta(key, value)

    # Quick reconcile: pending groups and AD stamps (writeback.app.reconcile) -----------------------------------
    def mark_groups(self, resource: str, ids: Collection[str]) -> None:
        """Mark pending (inside the caller's transaction) the groups these users or groups are or belong to:
        a changed group, and every group holding a changed user or group (a nested group's parents)."""
        if not ids:
            return
        groups = set(ids) if resource == "groups" else set()
        self._mark(groups | self.groups_with_members(ids))

    def mark_pending(self, groups: Collection[str]) -> None:
        if groups:
            with self.batch():
                self._mark(groups)

    def _mark(self, groups: Collection[str]) -> None:
        if groups:
            row = self.db.execute(_NEXT_PENDING_SEQ).fetchone()
            seq = int(row[0]) if row else 1
            if row is None:  # the first mark of this state
                self.set_meta("pending_seq", str(seq))
            self.db.executemany(_UPSERT_PENDING, [(g, seq) for g in sorted(groups)])

    def pending_groups(self) -> PendingGroups:
        upto = int(self.get_meta("pending_seq") or 0)
        rows = self.db.execute("SELECT group_id FROM pending WHERE seq <= ?", (upto,)).fetchall()
        return PendingGroups(frozenset(r[0] for r in rows), upto)

    def settle_pending(self, groups: Collection[str], upto: int) -> None:
        rows = [(g, upto) for g in groups]
        if rows:
            with self.batch():
                self.db.executemany("DELETE FROM pending WHERE group_id = ? AND seq <= ?", rows)

    def group_stamps(self) -> dict[str, tuple[str, int]]:
        return {r[0]: (r[1], int(r[2])) for r in self.db.execute("SELECT cloud_id, dn, usn FROM stamps")}

    def record_stamps(self, stamps: Mapping[str, tuple[str, int]], *, replace: bool = False) -> None:
        with self.batch():
            if replace:
                self.db.execute("DELETE FROM stamps")
            if stamps:
                self.db.executemany(_UPSERT_STAMP, [(k, dn, usn) for k, (dn, usn) in stamps.items()])

    def forget_stamps(self, keys: Collection[str]) -> None:
        if keys:
            with self.batch():
                self.db.executemany("DELETE FROM stamps WHERE cloud_id = ?", [(k,) for k in keys])

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

    # Operator allowances past the safety thresholds (`writeback allow`, read by the running service) --------
    def allowances(self) -> dict[str, int]:
        raw = self.get_meta("allowances")
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}

    def set_allowances(self, allowances: Mapping[str, int]) -> None:
        kept = {k: int(v) for k, v in allowances.items() if v}
        with self.batch():
            self.set_meta("allowances", json.dumps(kept) if kept else None)

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

    # Provisioning log -----------------------------------------------------------------------------------
    def log(
        self,
        run_id: str,
        action: str,
        result: str,
        *,
        cloud_id: str | None = None,
        group_name: str | None = None,
        dn: str | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO log (time, run_id, cloud_id, group_name, dn, action, result, error, detail, actor) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                time.time(),
                run_id,
                cloud_id,
                group_name,
                dn,
                action,
                result,
                error,
                json.dumps(detail, default=str) if detail else None,
                actor,
            ),
        )

    def log_rows(self, records: Sequence[LogRecord]) -> list[int]:
        """Write ``records`` in one transaction (one commit for a whole batch of changes); their row ids, in
        order. An apply journals its changes as ``pending`` rows before sending them to AD (a write-ahead
        journal): a run killed after a write but before :meth:`finish_log` still leaves a row saying the change
        was being written, which the next apply marks ``interrupted`` (:meth:`close_pending_log`)."""
        ids: list[int] = []
        if not records:
            return ids
        now = time.time()
        with self.batch():
            for r in records:
                row = self.db.execute(
                    "INSERT INTO log (time, run_id, cloud_id, group_name, dn, action, result, error, detail, "
                    "actor) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
                    (
                        now,
                        r.run_id,
                        r.cloud_id,
                        r.group_name,
                        r.dn,
                        r.action,
                        r.result,
                        r.error,
                        json.dumps(r.detail, default=str) if r.detail else None,
                        r.actor,
                    ),
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def finish_log(
        self,
        outcomes: Sequence[tuple[int, str, str | None, float]],
        *,
        dropped: Collection[int] = (),
        applied: Mapping[str, str] | None = None,
        forgotten: Collection[str] = (),
    ) -> None:
        """One transaction for a batch of changes written to AD: each pending row's (id, result, error, time
        the change was written),
        pending rows of changes never attempted deleted (``dropped``), the DNs of created or moved groups
        recorded (``applied``) and the groups deleted forgotten (``forgotten``)."""
        if not (outcomes or dropped or applied or forgotten):
            return
        now = time.time()
        with self.batch():
            if outcomes:
                self.db.executemany(
                    "UPDATE log SET time = ?, result = ?, error = ? WHERE id = ?",
                    [(when, result, error, row_id) for row_id, result, error, when in outcomes],
                )
            if dropped:
                self.db.executemany("DELETE FROM log WHERE id = ?", [(i,) for i in dropped])
            if applied:
                self.db.executemany(_UPSERT_APPLIED, [(cid, dn, now) for cid, dn in applied.items()])
            if forgotten:
                rows = [(cid,) for cid in forgotten]
                self.db.executemany("DELETE FROM applied WHERE cloud_id = ?", rows)
                self.db.executemany("DELETE FROM fingerprints WHERE cloud_id = ?", rows)

    def close_pending_log(self, run_id: str) -> int:
        """Rows still ``pending`` from runs other than ``run_id`` (a run killed while writing) become
        ``interrupted``; how many. Called by an apply holding the writer lock, so no other run is writing."""
        (count,) = self.db.execute(
            "SELECT COUNT(*) FROM log WHERE result = ? AND run_id <> ?", (PENDING, run_id)
        ).fetchone()
        if count:
            self.db.execute(
                "UPDATE log SET result = ?, error = ? WHERE result = ? AND run_id <> ?",
                (INTERRUPTED, INTERRUPTED_MESSAGE, PENDING, run_id),
            )
        return int(count)

    def read_log(
        self,
        *,
        cloud_id: str | None = None,
        group: str | None = None,
        action: str | None = None,
        result: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[LogEntry]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("cloud_id", cloud_id),
            ("action", action),
            ("result", result),
            ("run_id", run_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if group:
            where.append(f"(group_name {self.like} ? OR dn {self.like} ? OR cloud_id = ?)")
            args += [f"%{group}%", f"%{group}%", group]
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        sql = (
            f"SELECT {_LOG_COLUMNS} FROM log"  # noqa: S608 - fixed column names, values bound
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        rows = self.db.execute(sql, [*args, limit]).fetchall()
        return [_log_entry(r) for r in reversed(rows)]

    # Console: provisioning log queries -----------------------------------------------------------------------
    def query_log(self, query: LogQuery) -> list[LogEntry]:
        """One page of the provisioning log, newest first, filtered as the console and /api/log ask."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("action", query.action), ("result", query.result), ("run_id", query.run_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if query.text:
            # LIKE with ESCAPE: a % or _ typed into the filter is matched literally.
            pattern = "%" + query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                f"(cloud_id = ? OR group_name {self.like} ? ESCAPE '\\' OR dn {self.like} ? ESCAPE '\\')"
            )
            args += [query.text, pattern, pattern]
        if query.since is not None:
            where.append("time >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("time < ?")
            args.append(query.until)
        sql = (
            f"SELECT {_LOG_COLUMNS} FROM log"  # noqa: S608 - fixed columns, values bound
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ? OFFSET ?"
        )
        return [_log_entry(r) for r in self.db.execute(sql, [*args, query.limit, query.offset]).fetchall()]

    def log_entry(self, entry_id: int) -> LogEntry | None:
        r = self.db.execute(f"SELECT {_LOG_COLUMNS} FROM log WHERE id = ?", (entry_id,)).fetchone()  # noqa: S608
        return None if r is None else _log_entry(r)

    def log_actions_per_day(self, since: float) -> list[tuple[str, str, int]]:
        """(UTC day as YYYY-MM-DD, result, count) of the log rows since ``since``: the console's chart.
        ``CAST(… AS BIGINT) / 86400`` is integer division in SQLite and PostgreSQL alike."""
        rows = self.db.execute(
            "SELECT CAST(time AS BIGINT) / 86400 AS day, result, COUNT(*) FROM log WHERE time >= ? "
            "GROUP BY day, result ORDER BY day",
            (since,),
        ).fetchall()
        return [(time.strftime("%Y-%m-%d", time.gmtime(int(d) * 86400)), res, int(n)) for d, res, n in rows]

    def prune_log(self, before: float) -> int:
        """Delete log rows older than ``before`` (the console.log_retention_days setting); how many."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM log WHERE time < ?", (before,)).fetchone()
        self.db.execute("DELETE FROM log WHERE time < ?", (before,))
        return int(count)

    # Last applied ---------------------------------------------------------------------------------------
    def record_applied(self, cloud_id: str, dn: str) -> None:
        self.db.execute(_UPSERT_APPLIED, (cloud_id, dn, time.time()))

    def forget_applied(self, cloud_id: str) -> None:
        with self.batch():
            self.db.execute("DELETE FROM applied WHERE cloud_id = ?", (cloud_id,))
            self.db.execute("DELETE FROM fingerprints WHERE cloud_id = ?", (cloud_id,))

    def record_fingerprints(self, prints: Mapping[str, str]) -> None:
        if not prints:
            return
        with self.batch():
            self.db.executemany(_UPSERT_PRINT, list(prints.items()))

    def applied_fingerprints(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT cloud_id, fingerprint FROM fingerprints")}

    def applied_dns(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT cloud_id, dn FROM applied")}

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (fast, and all or nothing), committed at the end."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.db.execute("COMMIT")

    # Leader lease (writeback.app.lease) -------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> LeaseGrant | None:
        """Take the lease ``name`` for ``ttl`` seconds, or extend it when ``holder`` already holds it.

        One statement, so two servers racing for a free lease cannot both win: the row's conflict makes the
        second insert an update whose WHERE fails. The fencing token grows by one each time the lease changes
        hands or is taken again after it ran out; a holder renewing in time keeps its token. None when another
        holder's lease still runs."""
        now = self.now_sql
        row = self.db.execute(
            f"INSERT INTO leases (name, holder, token, expires, acquired) VALUES (?, ?, 1, {now} + ?, {now}) "  # noqa: S608 - the clock expression is a constant of the backend
            "ON CONFLICT (name) DO UPDATE SET "
            "token = CASE WHEN leases.holder = excluded.holder AND leases.expires > excluded.acquired "
            "THEN leases.token ELSE leases.token + 1 END, "
            "acquired = CASE WHEN leases.holder = excluded.holder AND leases.expires > excluded.acquired "
            "THEN leases.acquired ELSE excluded.acquired END, "
            "holder = excluded.holder, expires = excluded.expires "
            "WHERE leases.holder = excluded.holder OR leases.expires <= excluded.acquired "
            f"RETURNING token, expires - {now}",
            (name, holder, ttl),
        ).fetchone()
        return LeaseGrant(int(row[0]), float(row[1])) if row else None

    def check_lease(self, name: str, holder: str, token: int) -> float | None:
        """Seconds ``holder``'s lease with ``token`` still runs by the database's clock; None when it ended."""
        row = self.db.execute(
            f"SELECT expires - {self.now_sql} FROM leases WHERE name = ? AND holder = ? AND token = ?",  # noqa: S608 - constant clock expression
            (name, holder, token),
        ).fetchone()
        if row is None or float(row[0]) <= 0:
            return None
        return float(row[0])

    def release_lease(self, name: str, holder: str, token: int) -> None:
        """End ``holder``'s lease now (a clean stop), so a standby takes over without waiting for it to run out."""
        self.db.execute(
            f"UPDATE leases SET expires = {self.now_sql} WHERE name = ? AND holder = ? AND token = ?",  # noqa: S608 - constant clock expression
            (name, holder, token),
        )

    def lease_holder(self, name: str) -> LeaseHolder | None:
        row = self.db.execute(
            f"SELECT holder, token, expires - {self.now_sql} FROM leases WHERE name = ?",  # noqa: S608 - constant clock expression
            (name,),
        ).fetchone()
        return LeaseHolder(str(row[0]), int(row[1]), float(row[2])) if row else None

    # Copying a whole state (`writeback state migrate`) ----------------------------------------------------
    def read_table(self, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """(column names, rows) of one of :data:`ALL_TABLES`."""
        if table not in ALL_TABLES:
            raise StateError(f"unknown state table {table!r}")
        cursor = self.db.execute(f"SELECT * FROM {table}")  # noqa: S608 - a checked, constant name
        columns = tuple(d[0] for d in cursor.description)
        return columns, [tuple(r) for r in cursor.fetchall()]

    def write_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into one of :data:`ALL_TABLES` (inside the caller's transaction)."""
        if table not in ALL_TABLES or not all(c.isidentifier() for c in columns):
            raise StateError(f"unknown state table {table!r} or columns {columns!r}")
        if rows:
            marks = ", ".join("?" * len(columns))
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608 - checked names

    def after_copy(self) -> None:
        """After rows were copied in with their own ids: let the database number new rows after them."""

    def is_empty(self) -> bool:
        """No row in any table (a fresh state, safe to copy another one into)."""
        return all(
            self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] == 0  # noqa: S608 - constant names
            for t in ALL_TABLES
        )
