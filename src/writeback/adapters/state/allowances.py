"""The allowances part of the SQL state store (ports.AllowanceStore): the operators' allowances past the safety
thresholds (`writeback allow`, read by the running service) and the key-value table they are kept in."""

from __future__ import annotations

import json
from collections.abc import Mapping

from writeback.adapters.state.sqlcore import SqlCore


class AllowancesSql(SqlCore):
    """ports.AllowanceStore over the store's connection (``get_meta`` is the core's: every part reads it)."""

    def allowances(self) -> dict[str, int]:
        raw = self.get_meta("allowances")
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}

    def set_allowances(self, allowances: Mapping[str, int]) -> None:
        kept = {k: int(v) for k, v in allowances.items() if v}
        with self.batch():
            self.set_meta("allowances", json.dumps(kept) if kept else None)

    def write_meta(self, values: Mapping[str, str | None]) -> None:
        with self.batch():
            for key, value in values.items():
                self.set_meta(key, value)
