"""The journal part of the SQL state store (ports.Journal): the provisioning log, written ahead of each change
sent to AD, finished with the applied state in one transaction, and queried by the CLI and the console."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from writeback.adapters.state.applied import _UPSERT_APPLIED
from writeback.adapters.state.sqlcore import SqlCore
from writeback.core.dn import normalize_dn
from writeback.core.ports import INTERRUPTED, PENDING, LogEntry, LogQuery, LogRecord

__all__ = ["INTERRUPTED_MESSAGE", "JournalSql", "LogEntry", "LogQuery"]

INTERRUPTED_MESSAGE = (
    "the run stopped (killed or crashed) while this change was being written to AD: it may or may not have "
    "been applied; the next apply planned from what AD then held and finished it"
)

_LOG_COLUMNS = "id, time, run_id, cloud_id, group_name, dn, action, result, error, detail, actor"

# Index rows per INSERT statement: one statement of many rows costs less than as many one-row statements (both
# backends; docs/benchmarks.md, "The log's member index"), and 2 x 500 parameters stay well under SQLite's
# limit of 32,766. A change may name a member twice in two spellings of one DN (one key): the index holds it
# once (ON CONFLICT DO NOTHING).
_LOG_MEMBER_ROWS = 500


def _insert_log_members(rows: int) -> str:
    # Only the number of placeholders varies; every value is bound.
    marks = ",".join(["(?,?)"] * rows)
    return f"INSERT INTO log_member (log_id, value) VALUES {marks} ON CONFLICT (log_id, value) DO NOTHING"  # noqa: S608


# The member index rows of the log rows older than a time (prune_log).
_PRUNE_LOG_MEMBERS = "DELETE FROM log_member WHERE log_id IN (SELECT id FROM log WHERE time < ?)"


def _member_rows(records: Sequence[LogRecord], ids: Sequence[int]) -> Iterator[list[int | str]]:
    """The log_member index rows of ``records`` as the parameters of one INSERT each (log id, key, log id, key,
    ...: up to _LOG_MEMBER_ROWS rows), made as they are written (a 250,000-member create is not copied). The key
    is how DNs compare (schema migration 9)."""
    chunk: list[int | str] = []
    for record, row_id in zip(records, ids, strict=True):
        for value in record.member_values:
            chunk += (row_id, normalize_dn(value))
            if len(chunk) == 2 * _LOG_MEMBER_ROWS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _log_entry(r: Any) -> LogEntry:
    detail = json.loads(r[9]) if r[9] else None
    return LogEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], detail, r[10])


class JournalSql(SqlCore):
    """ports.Journal over the store's connection."""

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
        was being written, which the next apply marks ``interrupted`` (:meth:`close_pending_log`).

        Each record's member values go to the log_member index in the same transaction (INSERTs of many rows
        each), so :meth:`query_log` finds a member's rows by every value, not only the detail's first ones."""
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
            if any(r.member_values for r in records):
                full = _insert_log_members(_LOG_MEMBER_ROWS)
                for chunk in _member_rows(records, ids):
                    rows = len(chunk) // 2
                    self.db.execute(full if rows == _LOG_MEMBER_ROWS else _insert_log_members(rows), chunk)
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
                ids = [(i,) for i in dropped]
                self.db.executemany("DELETE FROM log_member WHERE log_id = ?", ids)
                self.db.executemany("DELETE FROM log WHERE id = ?", ids)
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
        if query.before is not None:
            where.append("id < ?")
            args.append(query.before)
        if query.member:
            terms: list[str] = []
            for value in query.member:
                # As json.dumps wrote it into detail (a DN's backslashes doubled), LIKE-escaped, in quotes.
                text = json.dumps(value)[1:-1]
                like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                terms.append(f"cloud_id = ? OR detail {self.like} ? ESCAPE '\\'")
                args += [value, f'%"{like}"%']
            # Every member value of a change, past the first ones the detail keeps (log_rows).
            keys = list(dict.fromkeys(normalize_dn(value) for value in query.member))
            marks = ",".join("?" * len(keys))
            terms.append(f"id IN (SELECT log_id FROM log_member WHERE value IN ({marks}))")  # noqa: S608 - marks
            args += keys
            where.append("(" + " OR ".join(terms) + ")")
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
        """Delete log rows older than ``before`` (the console.log_retention_days setting) with their member
        index rows, in one transaction; how many."""
        with self.batch():
            (count,) = self.db.execute("SELECT COUNT(*) FROM log WHERE time < ?", (before,)).fetchone()
            if count:
                self.db.execute(_PRUNE_LOG_MEMBERS, (before,))
                self.db.execute("DELETE FROM log WHERE time < ?", (before,))
        return int(count)
