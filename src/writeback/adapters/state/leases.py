"""The lease part of the SQL state store (ports.LeaseStore): the leader lease of `writeback run` instances on
one database, with its times by the database's clock (:mod:`writeback.app.lease`)."""

from __future__ import annotations

from writeback.adapters.state.sqlcore import SqlCore
from writeback.core.ports import LeaseGrant, LeaseHolder

__all__ = ["LeaseGrant", "LeaseHolder", "LeaseSql"]


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

    def lease_holder(self, name: str) -> LeaseHolder | None:
        row = self.db.execute(
            f"SELECT holder, token, expires - {self.now_sql} FROM leases WHERE name = ?",  # noqa: S608 - constant clock expression
            (name,),
        ).fetchone()
        return LeaseHolder(str(row[0]), int(row[1]), float(row[2])) if row else None
