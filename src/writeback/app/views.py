"""What the console shows, read from the state: status counts, managed groups, log rows. The console's
pages and API format these values; reading and shaping them lives here, beside the other use cases, so the
console is routes and templates only (issue 22)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from writeback.app.logquery import iso_time, parse_since, parse_until
from writeback.core.journal import LOG_ACTIONS, LOG_RESULTS
from writeback.core.logtext import Row, row_steps, troubleshooting
from writeback.core.ports import LogQuery, Store
from writeback.errors import ConfigError

LOG_COLUMNS = ("id", "time", "run_id", "action", "result", "cloud_id", "group_name", "dn", "error", "actor")


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC, as every output gives times (:func:`writeback.app.logquery.iso_time`)."""
    return None if ts is None else iso_time(ts)


def _parse_time(parse: Callable[[str | None, str], float | None], params: Any, field: str) -> float | None:
    """A since/until filter (writeback.app.logquery, shared with `writeback log`); ValueError is a 400 here."""
    try:
        return parse(params.get(field), field)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def log_query(params: Any) -> LogQuery:
    """The log filters from query parameters: since/until (ISO 8601 or an age such as 12h), status, action,
    group, run, limit, offset, before (keyset paging: rows with a smaller id). ``member`` (a user's rows) needs
    the store: :func:`member_terms`."""
    until = _parse_time(parse_until, params, "until")  # a date alone means the whole day
    try:
        limit = min(max(int(params.get("limit") or 100), 1), 10_000)
        offset = max(int(params.get("offset") or 0), 0)
        before = int(params["before"]) if params.get("before") else None
    except ValueError:
        raise ValueError("limit, offset and before must be whole numbers") from None
    for name, known in (("action", LOG_ACTIONS), ("status", LOG_RESULTS)):
        value = params.get(name)
        if value and value not in known:  # as `writeback log`: an unknown value is an error, not "no entries"
            raise ValueError(f"{name} {value!r} is not one of: {', '.join(known)}")
    return LogQuery(
        since=_parse_time(parse_since, params, "since"),
        until=until,
        result=params.get("status") or None,
        action=params.get("action") or None,
        text=params.get("group") or None,
        run_id=params.get("run") or None,
        limit=limit,
        offset=offset,
        before=before,
    )


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    return "; ".join(map(str, value)) if isinstance(value, list) else str(value)


def entry_dict(e: Any, target_ou: str | None = None) -> dict[str, Any]:
    """One log row after Graph's provisioningObjectSummary: ids, time, action, status, identities, steps."""
    d: dict[str, Any] = e.to_dict()
    d["activityDateTime"] = iso(e.time)
    d["status"] = e.result
    # Users are their own target type (issue 24: the log row's detail says "target": "user"); groups by default.
    kind = str((e.detail or {}).get("target") or "group")
    d["targetType"] = kind
    d["sourceIdentity"] = {"id": e.cloud_id, "displayName": e.group_name, "type": kind}
    d["targetIdentity"] = {"id": e.dn, "displayName": e.dn, "type": kind}
    detail = e.detail or {}
    if "modified" in detail:  # old and new values, as the engine logs them (redacted values stay hidden)
        d["modifiedProperties"] = [
            {"displayName": m["name"], "oldValue": _shown(m.get("old")), "newValue": _shown(m.get("new"))}
            for m in detail["modified"]
        ]
    else:  # rows logged before values were recorded
        d["modifiedProperties"] = [
            {"displayName": name, "oldValue": None, "newValue": None} for name in detail.get("attributes", [])
        ]
    # A change's member count (a skip_members row's "members" lists the members skipped instead).
    if isinstance(detail.get("members"), int):
        values = detail.get("member_values") or []
        more = detail["members"] - len(values)
        listed = "; ".join(values) + (f" … and {more} more" if more > 0 and values else "")
        d["modifiedProperties"].append(
            {
                "displayName": "member",
                "oldValue": listed if e.action == "remove_members" else None,
                "newValue": listed if e.action != "remove_members" else None,
            }
            if values
            else {
                "displayName": "member",
                "oldValue": None,
                "newValue": f"{detail['members']} values ({e.action})",
            }
        )
    if "new_dn" in detail:
        d["modifiedProperties"].append(
            {"displayName": "distinguishedName", "oldValue": e.dn, "newValue": detail["new_dn"]}
        )
    # Graph's initiatedBy: an operator's action names the token (or OS user); the rest is writeback's own.
    d["initiatedBy"] = (
        {"displayName": e.actor, "initiatorType": "user"}
        if e.actor
        else {"displayName": "writeback", "initiatorType": "system"}
    )
    row = Row(e.action, e.result, e.dn, e.error, detail, e.actor, e.group_name)
    d["steps"] = row_steps(row)  # what happened, in words (writeback.core.logtext)
    d["troubleshooting"] = troubleshooting(row, target_ou)
    return d


def status_counts(store: Store, days: int = 14) -> tuple[int, list[tuple[str, str, int]]]:
    """The number of managed groups, and log rows per day and result over the last ``days`` days."""
    return len(store.applied_dns()), store.log_actions_per_day(time.time() - days * 86400)


def log_rows(store: Store, q: LogQuery, target_ou: str | None = None) -> list[dict[str, Any]]:
    """The log rows ``q`` selects, as the API gives them."""
    return [entry_dict(e, target_ou) for e in store.query_log(q)]


def log_page(
    store: Store, q: LogQuery, target_ou: str | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of rows (newest first) and the ``before`` of the next page, None on the last one: keyset
    paging on the row id, so a page never repeats or skips a row while new rows arrive (they have larger
    ids). One row more than asked is read to know whether a next page exists."""
    rows = store.query_log(replace(q, limit=q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return [entry_dict(e, target_ou) for e in rows], (rows[-1].id if more and rows else None)


def next_link(path: str, params: Mapping[str, str], before: int | None) -> str | None:
    """The URL of the next page, as Graph's @odata.nextLink: the same filters, ``before`` the last row's id
    (an ``offset`` given for the first page is dropped: the key replaces it)."""
    if before is None:
        return None
    kept = [(k, v) for k, v in params.items() if k not in ("before", "offset") and v != ""]
    return f"{path}?{urlencode([*kept, ('before', str(before))])}"


def member_terms(store: Store, user_id: str) -> tuple[str, ...]:
    """What a log row names a user by: its cloud id (its own rows, a skipped member's id), and the DNs its AD
    account had as a member value (the replica's onPremisesDistinguishedName for a synced user, the DNs
    writeback wrote an account to for a created one, from the user's own create and move rows)."""
    terms = [user_id]
    user = store.find_user(user_id)
    if user is not None and user.on_premises_distinguished_name:
        terms.append(user.on_premises_distinguished_name)
    for e in store.query_log(LogQuery(text=user_id, limit=200)):
        if e.cloud_id == user_id and (e.detail or {}).get("target") == "user":
            terms += [v for v in (e.dn, (e.detail or {}).get("new_dn")) if isinstance(v, str) and v]
    return tuple(dict.fromkeys(terms))


def find_cloud_groups(store: Store, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Live cloud groups whose display name contains ``text`` (lower case) or whose id is it: provision's
    search."""
    groups = store.snapshot(member_groups=()).groups.values()
    return [
        {"id": g.id, "displayName": g.display_name}
        for g in groups
        if not g.deleted and (text in g.display_name.lower() or text == g.id.lower())
    ][:limit]


def skipped_reasons(detail: dict[str, Any] | None) -> dict[str, int]:
    """Skipped members by reason from a ``skip_members`` row (rows since issue 22 name each member)."""
    detail = detail or {}
    if "reasons" in detail:
        return dict(detail["reasons"])
    return dict(Counter(m.get("reason", "?") for m in detail.get("members", [])))
