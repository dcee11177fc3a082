"""What the console's group, user and groups-list pages show (issue 25), read from the state and, for a group's
AD object, from AD on the service's own thread. The console formats these values; the JSON twins
(/api/groups/{id}, /api/users/{id}) give them as they are.

A group's members are shown side by side, cloud and AD, each with its state:

- **written**: the member's AD account is a member value of the AD group;
- **skipped**, with the reason the last plan gave (cloud-only user, device, guest…: the group's latest
  ``skip_members`` log row, which names each member);
- **pending**: neither yet (the next reconcile writes it, or a held or failed change keeps it out).

An AD member value no cloud member accounts for is listed as "not in the cloud group" (a reconcile removes
it, unless a safety threshold holds the removal).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from writeback.app.views import entry_dict, iso, skipped_reasons
from writeback.config import Settings
from writeback.core.desired import cloud_intents
from writeback.core.dn import normalize_dn, parent_dn
from writeback.core.logtext import dn_name, reason_words
from writeback.core.model import CloudGroup, CloudUser, DirectoryGroup
from writeback.core.ports import LogEntry, LogQuery, ResolvedAccounts, Store

GROUP_SCOPES = {0x2: "global", 0x4: "domain local", 0x8: "universal"}
SECURITY_BIT = 0x80000000
SORTS = ("name", "state", "synced")
PAGE_SIZE = 50


def group_kind(g: CloudGroup) -> str:
    """The cloud group's type as the Entra admin center names it."""
    if g.is_unified:
        kind = "Microsoft 365"
    elif g.mail_enabled and g.security_enabled:
        kind = "Mail-enabled security"
    elif g.mail_enabled:
        kind = "Distribution"
    else:
        kind = "Security"
    return kind + (" (dynamic membership)" if g.is_dynamic else "")


def source_of_authority(g: CloudGroup) -> str:
    if g.soa_converted:
        return "cloud (converted from AD: source of authority moved to Entra ID)"
    if g.from_ad:
        return "AD (synced by Entra Connect; writeback does not write it)"
    return "cloud"


def ad_group_dict(g: DirectoryGroup) -> dict[str, Any]:
    """The AD object: DN, sAMAccountName, type and scope (from groupType), objectGUID, SID, OU."""
    gtype = g.group_type & 0xFFFFFFFF
    scope = next((name for bit, name in GROUP_SCOPES.items() if gtype & bit), "unknown")
    return {
        "dn": g.dn,
        "sAMAccountName": g.sam_account_name,
        "groupType": "security" if gtype & SECURITY_BIT else "distribution",
        "groupScope": scope,
        "groupTypeValue": g.group_type,
        "objectGUID": g.object_guid,
        "objectSid": g.object_sid,
        "ou": parent_dn(g.dn),
        "anchor": g.anchor,
        "members": len(g.members),
    }


def read_ad_group(directory: Any, schema_read: Collection[str], dn: str) -> dict[str, Any] | None:
    """Read the group at ``dn`` with its members' accounts (one search): run on the service's thread. None when
    AD has no group there."""
    groups, accounts = directory.read_groups_with_accounts([dn], tuple(schema_read), ())
    if not groups:
        return None
    g: DirectoryGroup = groups[0]
    resolved: ResolvedAccounts = accounts
    return {
        "group": ad_group_dict(g),
        "member_dns": sorted(g.members, key=str.lower),
        "by_sid": {sid: a.dn for sid, a in resolved.by_sid.items()},
        "by_guid": {guid: a.dn for guid, a in resolved.by_guid.items()},
    }


def _user_dict(u: CloudUser | None, uid: str) -> dict[str, Any]:
    if u is None:
        return {"id": uid, "displayName": None, "userPrincipalName": None, "type": "unknown"}
    return {
        "id": u.id,
        "displayName": u.display_name,
        "userPrincipalName": u.user_principal_name,
        "type": "guest" if u.is_guest else ("synced from AD" if u.is_synced else "cloud-only"),
        "soaConverted": u.soa_converted,
        "onPremisesDistinguishedName": u.on_premises_distinguished_name,
    }


def created_accounts(store: Store, user_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """The AD accounts writeback created for these users ([users] provision = "cloud_members"), by user id:
    from the user-target create and move rows of the log (the newest DN wins)."""
    wanted = set(user_ids)
    out: dict[str, dict[str, Any]] = {}
    if not wanted:
        return out
    rows = [
        *store.query_log(LogQuery(action="create", limit=10_000)),
        *store.query_log(LogQuery(action="move", limit=10_000)),
    ]
    for e in sorted(rows, key=lambda r: r.id):
        detail = e.detail or {}
        if e.cloud_id in wanted and detail.get("target") == "user" and e.result == "success":
            dn = str(detail.get("new_dn") or e.dn) if e.action == "move" else e.dn
            out[e.cloud_id] = {"dn": dn, "createdAt": out.get(e.cloud_id, {}).get("createdAt") or iso(e.time)}
    return out


def _last(entries: list[LogEntry], action: str) -> LogEntry | None:
    return next((e for e in entries if e.action == action), None)


def _since_last_success(entries: list[LogEntry]) -> list[LogEntry]:
    """The rows (newest first) after the group's last successful change, or of its run: what still stands. A
    run logs what it holds before it writes the rest, so a held removal and a written update of one pass are
    both current."""
    last_ok = next((e for e in entries if e.result == "success"), None)
    return [
        e
        for e in entries
        if last_ok is None or e.id > last_ok.id or (e.run_id == last_ok.run_id and e.result != "success")
    ]


def group_state(entries: list[LogEntry]) -> tuple[str, str | None]:
    """("in sync" | "held" | "failing" | "not yet written", in sync as of): from the group's log rows, newest
    first. In sync only when the last success has no held or failed row after it."""
    last_ok = next((e for e in entries if e.result == "success"), None)
    after = _since_last_success(entries)
    if any(e.result == "held" for e in after):
        return "held", None
    if any(e.result in ("error", "interrupted") for e in after):
        return "failing", None
    if last_ok is None:
        return "not yet written", None
    return "in sync", iso(last_ok.time)


def scope_reasons(store: Store, settings: Settings, ids: Collection[str]) -> dict[str, str]:
    """Why each of ``ids`` is no longer updated (out of scope, deleted, gone from the replica); in-scope
    groups are left out. Scope is a matter of each group's own properties: the groups are read without their
    members (a whole replica's memberships would cost seconds: issue 17)."""
    snapshot = store.snapshot(member_groups=())
    intents = cloud_intents(snapshot, settings, list(ids))
    out: dict[str, str] = {}
    for cid in ids:
        g = snapshot.groups.get(cid)
        if g is None:
            out[cid] = "not in the cloud replica (deleted in the cloud, or never read)"
        elif g.deleted:
            out[cid] = "deleted in the cloud (in deleted items)"
        elif cid not in intents.groups:
            out[cid] = intents.out_of_scope.get(cid, "out of writeback's scope")
    return out


def groups_list(
    store: Store,
    settings: Settings,
    *,
    q: str = "",
    sort: str = "name",
    desc: bool = False,
    page: int = 1,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """The managed groups (those writeback wrote), searchable by name or id, sorted by name, state or in sync
    as of, one page at a time; the groups no longer updated in their own list, with the reason."""
    applied = store.applied_dns()
    snapshot = store.snapshot(member_groups=())
    reasons = scope_reasons(store, settings, list(applied))
    needle = q.strip().lower()
    rows: list[dict[str, Any]] = []
    for cid, dn in applied.items():
        g = snapshot.groups.get(cid)
        name = g.display_name if g else None
        if (
            needle
            and needle not in (name or "").lower()
            and needle not in cid.lower()
            and needle not in dn.lower()
        ):
            continue
        entries = store.query_log(LogQuery(text=cid, limit=50))
        state, as_of = group_state(entries)
        skip = _last(entries, "skip_members")
        rows.append(
            {
                "cloud_id": cid,
                "displayName": name,
                "dn": dn,
                "state": state,
                "inSync": state == "in sync" and cid not in reasons,
                "inSyncAsOf": as_of if cid not in reasons else None,
                "skipped": skipped_reasons(skip.detail) if skip else {},
                "notUpdated": reasons.get(cid),
                "href": f"/groups/{cid}",
            }
        )
    keys = {
        "name": lambda r: ((r["displayName"] or "").lower(), r["cloud_id"]),
        "state": lambda r: (r["state"], (r["displayName"] or "").lower()),
        "synced": lambda r: (r["inSyncAsOf"] or "", (r["displayName"] or "").lower()),
    }
    rows.sort(key=keys.get(sort, keys["name"]), reverse=desc)
    managed = [r for r in rows if r["notUpdated"] is None]
    stale = [r for r in rows if r["notUpdated"] is not None]
    pages = max(1, -(-len(managed) // size))
    page = min(max(page, 1), pages)
    return {
        "value": managed[(page - 1) * size : page * size],
        "notUpdated": stale,
        "count": len(managed),
        "page": page,
        "pages": pages,
        "size": size,
    }


def group_detail(
    store: Store, settings: Settings, cid: str, ad: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Everything the group page shows; ``ad`` is :func:`read_ad_group`'s answer (None: not read or absent).
    None when neither the replica nor the state knows the group."""
    applied = store.applied_dns()
    snapshot = store.snapshot(member_groups=[cid])
    g = snapshot.groups.get(cid)
    dn = applied.get(cid)
    if g is None and dn is None:
        return None
    reason = scope_reasons(store, settings, [cid]).get(cid)
    entries = store.query_log(LogQuery(text=cid, limit=100))
    state, as_of = group_state(entries)
    skip = _last(entries, "skip_members")
    skipped = {str(m.get("id")): m for m in (skip.detail or {}).get("members", [])} if skip else {}
    refs = sorted(g.members, key=lambda m: (m.kind, m.id)) if g else []
    users = {r.id: snapshot.users.get(r.id) for r in refs if r.kind == "user"}
    created = created_accounts(store, [r.id for r in refs if r.kind == "user"])
    ad_members = {normalize_dn(d): d for d in (ad or {}).get("member_dns", [])}
    by_sid: Mapping[str, str] = (ad or {}).get("by_sid", {})
    by_guid: Mapping[str, str] = (ad or {}).get("by_guid", {})
    matched: set[str] = set()
    members = []
    for ref in refs:
        u = users.get(ref.id)
        account = _account_dn(ref.id, u, by_sid, by_guid, created, ad_members)
        key = normalize_dn(account) if account else None
        row: dict[str, Any] = {
            "id": ref.id,
            "kind": ref.kind,
            "displayName": (u.display_name or u.user_principal_name) if u else None,
            "userPrincipalName": u.user_principal_name if u else None,
            "adMember": ad_members.get(key) if key else None,
            "createdByWriteback": ref.id in created,
        }
        if ad is not None and key is not None and key in ad_members:
            matched.add(key)
            row["state"], row["reason"] = "written", None
        elif ref.id in skipped:
            row["state"] = "skipped"
            row["reason"] = reason_words(str(skipped[ref.id].get("reason")), 1, ref.kind)
            row["displayName"] = row["displayName"] or skipped[ref.id].get("name")
        else:
            row["state"], row["reason"] = "pending", None if ad is not None else "AD not read"
        if ref.kind == "user":
            row["href"] = f"/users/{ref.id}"
        members.append(row)
    extra = [
        {"adMember": d, "name": dn_name(d), "state": "not in the cloud group"}
        for k, d in sorted(ad_members.items())
        if k not in matched
    ]
    counts: dict[str, int] = {}
    for m in members:
        counts[m["state"]] = counts.get(m["state"], 0) + 1
    return {
        "cloud": {
            "id": cid,
            "displayName": g.display_name if g else None,
            "type": group_kind(g) if g else None,
            "sourceOfAuthority": source_of_authority(g) if g else None,
            "members": len(refs),
            "deleted": bool(g and g.deleted),
        },
        "ad": (ad or {}).get("group"),
        "appliedDn": dn,
        "state": state,
        "inSync": state == "in sync" and reason is None,
        "inSyncAsOf": as_of if reason is None else None,
        "notUpdated": reason,
        "members": members,
        "adOnly": extra,
        "memberCounts": counts,
        "accounts": [
            {"id": uid, "displayName": _name(users.get(uid)), "dn": a["dn"], "createdAt": a["createdAt"]}
            for uid, a in sorted(created.items())
        ],
        "held": [entry_dict(e) for e in _since_last_success(entries) if e.result == "held"][:10],
        "history": [entry_dict(e, settings.target.target_ou) for e in entries],
    }


def _name(u: CloudUser | None) -> str | None:
    return (u.display_name or u.user_principal_name) if u else None


def _account_dn(
    uid: str,
    u: CloudUser | None,
    by_sid: Mapping[str, str],
    by_guid: Mapping[str, str],
    created: Mapping[str, Mapping[str, Any]],
    ad_members: Mapping[str, str],
) -> str | None:
    """The DN of the member's AD account: by the SID Graph keeps (a synced user), the account writeback created,
    or the replica's onPremisesDistinguishedName."""
    if u is not None and u.on_premises_security_identifier:
        found = by_sid.get(u.on_premises_security_identifier.upper())
        if found:
            return found
    if uid in created:
        return str(created[uid]["dn"])
    if u is not None and u.on_premises_distinguished_name:
        return u.on_premises_distinguished_name
    return None


def find_users(store: Store, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Live cloud users whose display name or UPN contains ``text`` (any case), or whose id it is."""
    return [_user_dict(u, u.id) for u in store.search_users(text, limit)] if text.strip() else []


def user_detail(store: Store, settings: Settings, uid: str, terms: tuple[str, ...]) -> dict[str, Any] | None:
    """The user page: the cloud user, the groups writeback added it to or removed it from (and when), the
    members it was skipped as, and its AD account where writeback manages one. ``terms``:
    :func:`writeback.app.views.member_terms`."""
    u = store.find_user(uid)
    rows = store.query_log(LogQuery(member=terms, limit=500))
    if u is None and not rows:
        return None
    names = store.snapshot(member_groups=()).groups
    memberships = []
    own = []
    for e in rows:
        detail = e.detail or {}
        if e.cloud_id == uid and detail.get("target") == "user":
            own.append(entry_dict(e, settings.target.target_ou))
            continue
        what = {
            "add_members": "added to",
            "create": "added to (group created)",
            "remove_members": "removed from",
            "skip_members": "skipped in",
        }.get(e.action, e.action.replace("_", " "))
        reason = None
        if e.action == "skip_members":
            reason = next(
                (
                    reason_words(str(m.get("reason")), 1, str(m.get("kind")))
                    for m in detail.get("members", [])
                    if m.get("id") == uid
                ),
                None,
            )
        g = names.get(e.cloud_id or "")
        memberships.append(
            {
                "id": e.id,
                "time": iso(e.time),
                "what": what,
                "action": e.action,
                "result": e.result,
                "group": e.cloud_id,
                "groupName": (g.display_name if g else None) or e.group_name,
                "dn": e.dn,
                "reason": reason,
                "error": e.error,
            }
        )
    account = None
    created = created_accounts(store, [uid])
    if uid in created:
        account = {
            "dn": created[uid]["dn"],
            "how": "created by writeback (cloud-only member)",
            "since": created[uid]["createdAt"],
        }
    elif u is not None and u.soa_converted and u.on_premises_distinguished_name:
        account = {
            "dn": u.on_premises_distinguished_name,
            "how": "its original AD account, written in place (source of authority in the cloud)",
            "since": None,
        }
    return {
        "user": _user_dict(u, uid),
        "memberships": memberships,
        "account": account,
        "accountLog": own,
    }
