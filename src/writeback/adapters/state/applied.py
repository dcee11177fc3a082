"""The applied-state part of the SQL state store (ports.AppliedState): each managed group's last-applied DN and
fingerprint, and the quick reconcile's pending groups and AD stamps (writeback.app.reconcile)."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

from writeback.adapters.state.sqlcore import SqlCore, upsert
from writeback.core.ports import PendingGroups

_UPSERT_APPLIED = upsert("applied", ("cloud_id", "dn", "time"), ("cloud_id",))
_UPSERT_PRINT = upsert("fingerprints", ("cloud_id", "fingerprint"), ("cloud_id",))
_UPSERT_STAMP = upsert("stamps", ("cloud_id", "dn", "usn"), ("cloud_id",))


class AppliedSql(SqlCore):
    """ports.AppliedState over the store's connection."""

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

    # Quick reconcile: pending groups and AD stamps (writeback.app.reconcile) -----------------------------------
    def mark_pending(self, groups: Collection[str]) -> None:
        if groups:
            with self.batch():
                self._mark(groups)

    def pending_groups(self, after: int = 0) -> PendingGroups:
        upto = int(self.get_meta("pending_seq") or 0)
        rows = self.db.execute(
            "SELECT group_id FROM pending WHERE seq > ? AND seq <= ?", (after, upto)
        ).fetchall()
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
