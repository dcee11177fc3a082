"""SQLite state store: the cloud replica, delta links, last-applied state and the provisioning log.

One file, WAL mode, numbered migrations recorded in ``schema_migrations``. A delta round is one transaction
(:meth:`SqliteStore.transaction`), so a crash never leaves a half-applied round next to a newer delta link.

sqlite3's exceptions are translated in one place, the connection (:class:`_Connection`), into the StateError
branch: locked, corrupt (file or row) and a schema from a newer writeback each say what to do. The file and its
-wal/-shm/-journal companions are private (0600, see :mod:`writeback.adapters.state.files`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from writeback.adapters.state.files import FILE_MODE, private_dir, private_file
from writeback.core.model import CloudGroup, CloudSnapshot, CloudUser, MemberRef
from writeback.errors import StateCorruptError, StateError, StateLockedError, StateSchemaError

# Tables that mirror Graph; everything in them can be fetched again (`writeback state rebuild-replica`).
REPLICA_TABLES = ("users", "groups", "members", "delta_links")
# The tenant's NewUnifiedGroupWritebackDefault as last synced from Graph ("true", "false", NULL when not set).
UNIFIED_DEFAULT_KEY = "unified_writeback_default"
# What each resource's delta link was made for (API version and $select): another query needs a full round.
DELTA_QUERY_KEY = "delta_query:"
SIDE_FILES = ("-wal", "-shm", "-journal")
REBUILD_HINT = (
    "run `writeback state rebuild-replica` to rebuild the cloud replica from Microsoft Graph "
    "(the provisioning log is kept)"
)

MIGRATIONS: tuple[str, ...] = (
    # 1: replica, delta links, provisioning log, last-applied state
    """
    CREATE TABLE users (id TEXT PRIMARY KEY, data TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE groups (id TEXT PRIMARY KEY, data TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE members (group_id TEXT NOT NULL, member_id TEXT NOT NULL, kind TEXT NOT NULL,
                          PRIMARY KEY (group_id, member_id)) WITHOUT ROWID;
    CREATE INDEX members_by_member ON members (member_id);
    CREATE TABLE delta_links (resource TEXT PRIMARY KEY, link TEXT);
    CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, run_id TEXT NOT NULL,
                      cloud_id TEXT, group_name TEXT, dn TEXT, action TEXT NOT NULL, result TEXT NOT NULL,
                      error TEXT, detail TEXT);
    CREATE INDEX log_by_group ON log (cloud_id);
    CREATE INDEX log_by_time ON log (time);
    CREATE TABLE applied (cloud_id TEXT PRIMARY KEY, dn TEXT NOT NULL, time REAL NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    # 2: AD users cache for on-prem dynamic groups (rule-ready properties, keyed by objectGUID)
    """
    CREATE TABLE ad_users (guid TEXT PRIMARY KEY, data TEXT NOT NULL);
    """,
    # 3: fingerprint of the desired state last applied per group (tells AD drift from cloud changes)
    """
    CREATE TABLE fingerprints (cloud_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
    """,
)


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


def _group_to_json(g: CloudGroup) -> str:
    d = {f: getattr(g, f) for f in _GROUP_FIELDS}
    d["group_types"] = list(g.group_types)
    return json.dumps(d, separators=(",", ":"), default=_jsonable)


def _user_from_json(text: str, deleted: int) -> CloudUser:
    d = json.loads(text)
    d["deleted"] = bool(deleted)
    return CloudUser(**d)


def _group_from_json(text: str, deleted: int, members: frozenset[MemberRef]) -> CloudGroup:
    d = json.loads(text)
    d["group_types"] = tuple(d.get("group_types") or ())
    d["proxy_addresses"] = tuple(d.get("proxy_addresses") or ())
    d["deleted"] = bool(deleted)
    d["members"] = members
    return CloudGroup(**d)


def _corrupt_row(path: str, table: str, row_id: Any, exc: Exception) -> StateCorruptError:
    return StateCorruptError(
        f"state store {path}: the {table} row {row_id!r} of the cloud replica is damaged "
        f"({type(exc).__name__}: {exc}); {REBUILD_HINT}"
    )


class _Connection(sqlite3.Connection):
    """sqlite3's connection with its errors translated into the StateError branch (the adapter boundary)."""

    state_path = "?"
    busy_timeout = 30.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: sqlite3.Error) -> StateError:
        return translate_sqlite_error(exc, self.state_path, self.busy_timeout)


def translate_sqlite_error(exc: sqlite3.Error, path: str, busy_timeout: float) -> StateError:
    """The StateError an administrator can act on for one sqlite3 exception."""
    text = str(exc)
    # SQLITE_BUSY / SQLITE_LOCKED: https://www.sqlite.org/rescode.html#busy
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StateLockedError(
            f"state store {path}: {text} (another process kept it locked for more than {busy_timeout:g} s). "
            "Find the other writeback process (`writeback run`, `apply`) or tool holding it, wait for it "
            "to finish, and try again"
        )
    # SQLITE_CORRUPT / SQLITE_NOTADB: https://www.sqlite.org/rescode.html#corrupt
    if isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return StateCorruptError(
            f"state store {path} is damaged ({text}). If only the cloud replica is affected, {REBUILD_HINT}; "
            "otherwise restore it from a backup, or move the file aside: writeback starts a new one and "
            "adopts the AD groups it manages by their anchors (the old provisioning log stays in the old file)"
        )
    return StateError(f"state store {path}: {type(exc).__name__}: {text}")


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Tx:
    """ReplicaTransaction over one SQLite connection."""

    def __init__(self, store: SqliteStore) -> None:
        self.db = store.db

    def __enter__(self) -> _Tx:
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.execute("ROLLBACK" if exc[0] is not None else "COMMIT")

    def set_delta_link(self, resource: str, link: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO delta_links VALUES (?, ?)", (resource, link))

    def set_delta_query(self, resource: str, query: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (DELTA_QUERY_KEY + resource, query))

    def set_unified_writeback_default(self, value: bool | None) -> None:
        text = None if value is None else str(value).lower()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (UNIFIED_DEFAULT_KEY, text))

    def upsert_user(self, user: CloudUser) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (user.id, _user_to_json(user), int(user.deleted))
        )

    def remove_user(self, user_id: str, *, hard: bool) -> None:
        if hard:
            self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        else:
            self.db.execute("UPDATE users SET deleted = 1 WHERE id = ?", (user_id,))

    def upsert_group(self, group: CloudGroup) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
            (group.id, _group_to_json(group), int(group.deleted)),
        )

    def remove_group(self, group_id: str, *, hard: bool) -> None:
        if hard:
            self.db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
            self.db.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
        else:
            self.db.execute("UPDATE groups SET deleted = 1 WHERE id = ?", (group_id,))

    def add_members(self, group_id: str, members: Iterable[MemberRef]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO members VALUES (?, ?, ?)", ((group_id, m.id, m.kind) for m in members)
        )

    def remove_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        self.db.executemany(
            "DELETE FROM members WHERE group_id = ? AND member_id = ?", ((group_id, m) for m in member_ids)
        )

    def clear_members(self, group_id: str) -> None:
        self.db.execute("DELETE FROM members WHERE group_id = ?", (group_id,))

    def reset(self, resource: str) -> None:
        if resource == "users":
            self.db.execute("DELETE FROM users")
        elif resource == "groups":
            self.db.execute("DELETE FROM groups")
            self.db.execute("DELETE FROM members")
        else:
            raise StateError(f"unknown replica resource {resource!r}")


class SqliteStore:
    """The default state store (ports.ReplicaStore plus the provisioning log)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                self._make_private()
            db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout, factory=_Connection)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                f"cannot open state store {self.path}: {exc}; check state.path and its folder's permissions"
            ) from exc
        assert isinstance(db, _Connection)
        db.state_path, db.busy_timeout = self.path, busy_timeout
        self.db = db
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except StateError:
            self.db.close()
            raise

    def _make_private(self) -> None:
        """The database file 0600 before SQLite opens it, its folder 0700 when writeback creates it.

        SQLite creates the -wal, -shm and -journal files with the permissions of the database file
        (os_unix.c, findCreateFileMode), so a private database keeps them private; any left from an older,
        laxer version are tightened too."""
        private_dir(Path(self.path).parent)
        private_file(self.path)
        for suffix in SIDE_FILES:
            side = Path(self.path + suffix)
            if side.exists():
                side.chmod(FILE_MODE)

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied REAL)"
        )
        done = {r[0] for r in self.db.execute("SELECT version FROM schema_migrations")}
        newest = max(done, default=0)
        if newest > len(MIGRATIONS):
            raise StateSchemaError(
                f"state store {self.path} has schema version {newest}, written by a newer writeback; this "
                f"version knows versions up to {len(MIGRATIONS)}. Run the newer writeback again, or point "
                "state.path at a new file (a full reconcile adopts the AD groups by their anchors)"
            )
        for version, script in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

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
        members: dict[str, set[MemberRef]] = {}
        for gid, mid, kind in member_rows:
            members.setdefault(gid, set()).add(MemberRef(kind, mid))
        if member_groups is None:
            user_rows: Iterable[Any] = self.db.execute("SELECT id, data, deleted FROM users")
        else:
            wanted = {m.id for refs in members.values() for m in refs if m.kind == "user"}
            user_rows = self._select_in("SELECT id, data, deleted FROM users WHERE id", wanted)
        users: dict[str, CloudUser] = {}
        for r in user_rows:
            try:
                users[r[0]] = _user_from_json(r[1], r[2])
            except (ValueError, TypeError, KeyError) as exc:
                raise _corrupt_row(self.path, "users", r[0], exc) from exc
        groups: dict[str, CloudGroup] = {}
        for r in self.db.execute("SELECT id, data, deleted FROM groups"):
            try:
                groups[r[0]] = _group_from_json(r[1], r[2], frozenset(members.get(r[0], ())))
            except (ValueError, TypeError, KeyError) as exc:
                raise _corrupt_row(self.path, "groups", r[0], exc) from exc
        default = self.get_unified_writeback_default()
        return CloudSnapshot(users=users, groups=groups, unified_writeback_default=default)

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
            yield from self.db.execute(f"{query} IN ({','.join('?' * len(part))})", part)

    # Meta -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

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
        with self.batch():
            if replace:
                self.db.execute("DELETE FROM ad_users")
            self.db.executemany(
                "INSERT OR REPLACE INTO ad_users VALUES (?, ?)",
                ((u["id"], json.dumps(u, separators=(",", ":"))) for u in users if u.get("id")),
            )
            self.db.executemany("DELETE FROM ad_users WHERE guid = ?", ((g,) for g in removed))
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
    ) -> None:
        self.db.execute(
            "INSERT INTO log (time, run_id, cloud_id, group_name, dn, action, result, error, detail) VALUES (?,?,?,?,?,?,?,?,?)",
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
            ),
        )

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
            where.append("(group_name LIKE ? OR dn LIKE ? OR cloud_id = ?)")
            args += [f"%{group}%", f"%{group}%", group]
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        sql = (
            "SELECT * FROM log"  # noqa: S608 - fixed column names, values bound
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        rows = self.db.execute(sql, [*args, limit]).fetchall()
        return [
            LogEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]) if r[9] else None)
            for r in reversed(rows)
        ]

    # Last applied ---------------------------------------------------------------------------------------
    def record_applied(self, cloud_id: str, dn: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?, ?)", (cloud_id, dn, time.time()))

    def forget_applied(self, cloud_id: str) -> None:
        self.db.execute("DELETE FROM applied WHERE cloud_id = ?", (cloud_id,))
        self.db.execute("DELETE FROM fingerprints WHERE cloud_id = ?", (cloud_id,))

    def record_fingerprints(self, prints: Mapping[str, str]) -> None:
        with self.batch():
            self.db.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?)", prints.items())

    def applied_fingerprints(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT cloud_id, fingerprint FROM fingerprints")}

    def applied_dns(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT cloud_id, dn FROM applied")}

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many log writes into one transaction (fast), committed at the end."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
