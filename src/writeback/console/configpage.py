"""The read-only configuration page (``/config``, ``/api/config``) and its two testers.

What is shown is chosen field by field (an allow-list), never by walking the settings: a secret added to the
settings later cannot appear here by accident. No password, token, client secret, key file or where a secret is
kept is shown; the state's PostgreSQL URL (which may hold a user name) is reduced to "PostgreSQL".

The testers run in the browser session against the cloud replica the service keeps, as ``writeback rules test
--source cloud`` does, with the same library calls: :func:`writeback.core.rules.compile_rule` (filter, explain)
over the replica's users as Graph names their properties, and :func:`writeback.core.expressions.compile_expression`
over a replica group or user as the mapping reads it (:func:`writeback.core.mapping.group_source`,
:func:`~writeback.core.mapping.user_source`). They read only, so a viewer may use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from writeback.config import FilterClause, Settings
from writeback.core.expressions import compile_expression
from writeback.core.mapping import group_source, user_source
from writeback.core.model import CloudSnapshot
from writeback.core.rules import compile_rule
from writeback.errors import WritebackError

Rows = list[tuple[str, str]]
MAX_LISTED = 50  # users a rule test lists (as `rules test --limit`'s default order of magnitude)


def _on(value: bool) -> str:
    return "yes" if value else "no"


def _list(values: Iterable[str], empty: str = "none") -> str:
    items = list(values)
    return ", ".join(items) if items else empty


def _seconds(value: float) -> str:
    s = int(value)
    if s and s % 86400 == 0:
        return f"{s // 86400} d ({s} s)"
    if s and s % 3600 == 0:
        return f"{s // 3600} h ({s} s)"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60} min ({s} s)"
    return f"{value:g} s"


def _filters(filters: Iterable[Iterable[FilterClause]]) -> list[str]:
    """Scope filters as text: clauses ANDed within a filter, filters ORed (as Cloud Sync's scoping filters)."""
    out = []
    for f in filters:
        clauses = [
            f"{c.attribute} {c.operator} {c.value!r}"
            if c.value is not None
            else f"{c.attribute} {c.operator}"
            for c in f
        ]
        out.append(" AND ".join(clauses))
    return out


def sections(settings: Settings) -> list[dict[str, Any]]:
    """The configuration as titled sections of (setting, value) rows and mapping tables. No secrets."""
    scope, target, mapping, safety = settings.scope, settings.target, settings.mapping, settings.safety
    users, members, service = settings.users, settings.members, settings.service
    out: list[dict[str, Any]] = []
    out.append(
        {
            "title": "Scope: which cloud groups",
            "key": "scope",
            "rows": [
                ("scope.mode", scope.mode),
                ("scope.group_ids", _list(scope.group_ids)),
                ("scope.include_microsoft365", _on(scope.include_microsoft365)),
                ("scope.include_mail_enabled", _on(scope.include_mail_enabled)),
            ],
            "list_title": "Group filters (scope.filters: clauses ANDed, filters ORed)",
            "list": _filters(scope.filters),
        }
    )
    out.append(
        {
            "title": "Target: where in AD",
            "key": "target",
            "rows": [
                ("target.target_ou", target.target_ou),
                ("target.base_dn", target.base_dn),
                ("target.ldap_urls", _list(target.ldap_urls)),
                ("target.bind_dn", target.bind_dn),
                ("target.page_size", str(target.page_size)),
            ],
        }
    )
    out.append(
        {
            "title": "Group mapping (expressions)",
            "key": "mapping",
            "rows": [
                ("mapping.cn", mapping.cn),
                ("mapping.target_ou", mapping.target_ou or "target.target_ou"),
                ("mapping.description", mapping.description),
                ("mapping.display_name", mapping.display_name),
                ("mapping.sam_account_name", mapping.sam_account_name or "writeback's default"),
                ("mapping.group_scope", mapping.group_scope),
                ("mapping.anchor", mapping.anchor),
                ("mapping.keep_adopted_names", _on(mapping.keep_adopted_names)),
                ("mapping.create_missing_originals", _on(mapping.create_missing_originals)),
                ("mapping.secondary_smtp_addresses", _on(mapping.secondary_smtp_addresses)),
                *((f"mapping.attributes.{k}", v) for k, v in sorted(mapping.attributes.items())),
                ("members.match_order", _list(members.match_order)),
                ("members.max_members", str(members.max_members)),
                ("members.nested_groups", _on(members.nested_groups)),
            ],
        }
    )
    out.append(
        {
            "title": "Users ([users])",
            "key": "users",
            "rows": [
                ("users.provision", users.provision),
                ("users.target_ou", users.target_ou or "none"),
                ("users.guests", _on(users.guests)),
                ("users.on_leave", users.on_leave),
                ("users.create_disabled", _on(users.create_disabled)),
                ("users.smart_card_required", _on(users.smart_card_required)),
                *((f"users.attributes.{k}", v) for k, v in sorted(users.attributes.items())),
            ],
        }
    )
    out.append(
        {
            "title": "Safety thresholds",
            "key": "safety",
            "rows": [
                ("safety.delete_threshold", f"{safety.delete_threshold} groups"),
                ("safety.member_removal_percent", f"{safety.member_removal_percent:g} %"),
                ("safety.update_percent", f"{safety.update_percent:g} %"),
                ("safety.window", _seconds(safety.window)),
                ("safety.on_soft_delete", safety.on_soft_delete),
                ("safety.on_out_of_scope", safety.on_out_of_scope),
            ],
        }
    )
    out.append(
        {
            "title": "User filters: on-prem dynamic groups' rules",
            "key": "dynamic",
            "rows": [
                (f"{d.name} ({d.id})", f"{d.rule} (users under {d.users_base}, group in {d.ou})")
                for d in settings.dynamic_groups
            ],
            "empty": "No on-prem dynamic group is configured.",
        }
    )
    out.append(
        {
            "title": "Service",
            "key": "service",
            "rows": [
                ("service.poll_interval", _seconds(service.poll_interval)),
                ("service.reconcile_interval", _seconds(service.reconcile_interval)),
                ("service.deep_reconcile_interval", _seconds(service.deep_reconcile_interval)),
                ("service.max_backoff", _seconds(service.max_backoff)),
                (
                    "state",
                    "PostgreSQL (shared, high availability)" if settings.state.url else "SQLite (one server)",
                ),
            ],
        }
    )
    return out


def api_config(settings: Settings) -> dict[str, Any]:
    """The same as the page, as JSON: {section key: {setting: value}, with the group filters as a list}."""
    body: dict[str, Any] = {}
    for section in sections(settings):
        body[section["key"]] = dict(section["rows"])
        if "list" in section:
            body[section["key"]]["filters"] = section["list"]
    return body


def test_rule(rule_text: str, user: str, snapshot: CloudSnapshot) -> dict[str, Any]:
    """``writeback rules test`` in the console: the replica's users a rule matches, or why one user does or
    does not match. A rule that does not parse is an answer (its message), not an error."""
    try:
        rule = compile_rule(rule_text)
    except WritebackError as exc:
        return {"ok": False, "error": str(exc)}
    people = [u.graph_properties() for u in snapshot.users.values() if not u.deleted]
    result: dict[str, Any] = {"ok": True, "warnings": list(rule.warnings), "kind": rule.kind}
    if user:
        key = user.lower()
        found = [
            u
            for u in people
            if key
            in {
                str(u.get(k) or "").lower()
                for k in ("id", "userPrincipalName", "onPremisesSamAccountName", "displayName", "mail")
            }
        ]
        if not found:
            return {**result, "ok": False, "error": f"No user {user!r} in the cloud replica."}
        return {**result, "explained": [str(rule.explain(u)) for u in found]}
    matched = rule.filter(people)
    listed = sorted(matched, key=lambda x: str(x.get("displayName") or ""))[:MAX_LISTED]
    return {
        **result,
        "matched": len(matched),
        "of": len(people),
        "users": [
            {
                "name": str(u.get("displayName") or "-"),
                "upn": str(u.get("userPrincipalName") or u.get("onPremisesSamAccountName") or ""),
                "id": str(u.get("id") or ""),
            }
            for u in listed
        ],
        "more": max(0, len(matched) - MAX_LISTED),
    }


def test_expression(text: str, wanted: str, snapshot: CloudSnapshot) -> dict[str, Any]:
    """A mapping expression evaluated against one replica group (id or display name) or user (id or
    userPrincipalName), as the mapping reads it."""
    try:
        expression = compile_expression(text)
    except WritebackError as exc:
        return {"ok": False, "error": str(exc)}
    key = wanted.strip().lower()
    source: Mapping[str, Any] | None = None
    what = ""
    for g in snapshot.groups.values():
        if key in (g.id.lower(), g.display_name.lower()):
            source, what = group_source(g), f"group {g.display_name} ({g.id})"
            break
    if source is None:
        for u in snapshot.users.values():
            if key in (u.id.lower(), (u.user_principal_name or "").lower()):
                source, what = user_source(u), f"user {u.display_name or u.user_principal_name} ({u.id})"
                break
    if source is None:
        return {
            "ok": False,
            "error": f"No cloud group or user {wanted!r} in the cloud replica (give an object id, a group's name or a userPrincipalName).",
        }
    try:
        value = expression.evaluate_value(source)
    except WritebackError as exc:
        return {"ok": False, "error": f"{what}: {exc}", "of": what}
    shown = (
        "null (no value: the attribute is left empty)"
        if value is None
        else repr(value)
        if not isinstance(value, str)
        else value
    )
    if expression.redacted:
        shown = "[redacted] (Redact(): written to AD, never shown)"
    return {"ok": True, "of": what, "value": shown, "attributes": sorted(expression.attributes)}
