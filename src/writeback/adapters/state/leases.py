"""The lease part of the SQL state store (ports.LeaseStore): the leader lease of `writeback run` instances on
one database, with its times by the database's clock (:mod:`writeback.app.lease`)."""

from __future__ import annotations

from writeback.adapters.state.sqlcore import SqlCore
from writeback.core.ports import LeaseGrant, LeaseHolder

__all__ = ["LeaseGrant", "LeaseHolder", "LeaseSql", "session_name"]

# PostgreSQL keeps the first NAMEDATALEN - 1 bytes of application_name (63 with the default build):
# https://www.postgresql.org/docs/current/runtime-config-logging.html#GUC-APPLICATION-NAME
_SESSION_NAME_BYTES = 63


def session_name(instance: str) -> str:
    """The ``application_name`` of every PostgreSQL session of the writeback process ``instance`` (an instance
    id, ``host:pid:random``: :func:`writeback.app.lease.instance_id`), as ``pg_stat_activity`` shows it. The
    random part comes first, so that a long host name cut at 63 bytes cannot make two instances' names equal.
    ASCII only (PostgreSQL shows other characters as ``?``)."""
    random_part = instance.rsplit(":", 1)[-1]
    name = f"writeback {random_part} {instance}".encode("ascii", "replace").decode("ascii")
    return name[:_SESSION_NAME_BYTES]


class LeaseSql(SqlCore):
    """ports.LeaseStore over the store's connection (the lease opens a store of its own for it)."""

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

    def end_sessions(self, instance: str) -> int:
        """End every database session of the writeback process ``instance`` (PostgreSQL: those named
        :func:`session_name`), rolling back whatever transaction each has open; returns how many were ended.

        Why: an instance paused (``SIGSTOP``, a frozen VM) in the middle of a statement keeps its row locks for
        as long as it is paused. The server ends a session left idle in a transaction after 30 s
        (``idle_in_transaction_session_timeout``, :func:`.postgres.connection_params`), but a session stopped
        mid-statement is not idle: a pipelined ``executemany`` waits for the rest of its statements, or for the
        client to read its answers, and no server timeout covers that wait. The instance that takes the lease
        from it ends its sessions, as the fencing of the database side: the paused instance may write nothing
        more anyway, and it finds its connection gone (its open transaction rolled back) when it resumes.

        Only the sessions of this database and of the same role can be ended (a role may end its own
        sessions: https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL). SQLite
        has no sessions to end (one server, one writer lock): 0."""
        if self.dialect != "postgresql":
            return 0
        row = self.db.execute(
            "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = ? AND pid <> pg_backend_pid()",
            (session_name(instance),),
        ).fetchone()
        return int(row[0]) if row else 0

    def lease_holder(self, name: str) -> LeaseHolder | None:
        row = self.db.execute(
            f"SELECT holder, token, expires - {self.now_sql} FROM leases WHERE name = ?",  # noqa: S608 - constant clock expression
            (name,),
        ).fetchone()
        return LeaseHolder(str(row[0]), int(row[1]), float(row[2])) if row else None
