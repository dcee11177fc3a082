"""What the special rules read: a user's manager (Direct Reports) and its groups (memberOf).

Both prefer what the user dict carries ("manager", "memberOf", as Graph returns them with $expand) and fall
back to the :class:`~writeback.core.rules.context.RuleContext` callbacks. With neither, they raise RuleError rather
than answer "no": a guessed "no" would remove every member from the group in AD.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from writeback.core.rules.context import Env
from writeback.core.rules.properties import items_of, make_getter
from writeback.errors import RuleError

_id_getter = make_getter(("id", "objectId"))
_manager_getter = make_getter(("manager",))
_member_of_getter = make_getter(("memberOf",))


def _has_key(obj: Any, name: str) -> bool:
    """Whether ``obj`` has the key at all (a None value counts: it means "known to have none")."""
    if not isinstance(obj, Mapping):
        return False
    return name in obj or any(k.casefold() == name.casefold() for k in obj)


def _ref_id(value: Any) -> str | None:
    """A directory object reference as Graph gives it: an id string or an object with "id"."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def manager_of(obj: Any) -> str | None:
    """The manager id the user dict carries (for explanations)."""
    return _ref_id(_manager_getter(obj))


def reports_to(obj: Any, env: Env, manager_id: str, folded_manager_id: str) -> bool:
    """True when the user's manager is ``manager_id``: from the user's "manager", else the context."""
    if _has_key(obj, "manager"):
        manager = _ref_id(_manager_getter(obj))
        return manager is not None and manager.casefold() == folded_manager_id
    ctx = env.context
    user_id = _ref_id(_id_getter(obj))
    if ctx is not None and ctx.manager_of is not None:
        manager = ctx.manager_of(user_id) if user_id else None
        return manager is not None and manager.casefold() == folded_manager_id
    if ctx is not None and ctx.direct_reports_of is not None:
        key = ("directReports", folded_manager_id)
        reports = env.memo.get(key)
        if reports is None:
            reports = frozenset(r.casefold() for r in ctx.direct_reports_of(manager_id))
            env.memo[key] = reports
        return user_id is not None and user_id.casefold() in reports
    raise RuleError(
        'A "Direct Reports for" rule needs each user\'s manager: give the user a "manager" key (None when it '
        "has none) or pass RuleContext(manager_of=… or direct_reports_of=…)"
    )


def group_ids_or_none(obj: Any) -> frozenset[str] | None:
    """Case-folded ids of the groups the user dict lists, or None when it lists none."""
    value = _member_of_getter(obj)
    if value is None:
        return None
    return frozenset(i.casefold() for i in (_ref_id(v) for v in items_of(value)) if i)


def group_ids_of(obj: Any, env: Env) -> frozenset[str]:
    if _has_key(obj, "memberOf"):
        return group_ids_or_none(obj) or frozenset()
    ctx = env.context
    if ctx is not None and ctx.member_of is not None:
        user_id = _ref_id(_id_getter(obj))
        return frozenset(g.casefold() for g in ctx.member_of(user_id)) if user_id else frozenset()
    raise RuleError(
        'A memberOf rule needs each user\'s groups: give the user a "memberOf" key (a list of group ids) or '
        "pass RuleContext(member_of=…)"
    )
