"""What evaluation needs beyond the user itself: the clock and, for special rules, directory relations."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Inputs of special rules and ``system.now``.

    - ``now``: the moment ``system.now`` stands for (timezone-aware; naive is taken as UTC). Default: the
      current UTC time, read once per ``matches``/``filter``/``explain`` call. Pass it in tests.
    - ``manager_of(user_id)``: the user's manager id, for ``Direct Reports for`` when the user dict has no
      ``"manager"`` key. ``direct_reports_of(manager_id)``: the ids reporting to a manager, the other way round.
    - ``member_of(user_id)``: ids of the groups the user is a direct member of, for ``user.memberOf`` rules
      when the user dict has no ``"memberOf"`` key.
    """

    now: datetime | None = None
    manager_of: Callable[[str], str | None] | None = None
    direct_reports_of: Callable[[str], Collection[str]] | None = None
    member_of: Callable[[str], Collection[str]] | None = None


@dataclass(slots=True)
class Env:
    """Per-call evaluation state: the resolved clock and memoised values (thresholds, report sets)."""

    now: datetime
    context: RuleContext | None
    memo: dict[object, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, context: RuleContext | None) -> Env:
        now = context.now if context is not None and context.now is not None else datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return cls(now, context)
