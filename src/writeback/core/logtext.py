"""What a provisioning-log row says in words: its steps and, for a failure, the fix. Pure.

The console's details pane (issue 25) shows, after the Entra admin center's provisioning logs, the Steps of a
row and a "Troubleshooting & Recommendations" section. Both are derived here from the stored row alone (action,
result, error, DN, detail), so a row logged months ago reads the same as one logged now:

- :func:`row_steps` says what happened ("2 members added: Ana Lopez, Ben Ode"; "1 member not written:
  cloud-only user skipped: Ana Lopez") instead of four fixed lines;
- :func:`troubleshooting` names the fix: INSUFFICIENT_ACCESS on a group taken over outside the target OU
  names the rights to delegate on that group (docs/least-privilege.md, the dsacls lines of
  :func:`writeback.core.rights.dsacls_lines`); a value AD refused names AD's limit for that attribute
  (:data:`AD_LIMITS`).

Messages never contain Markdown (no backticks): they are shown as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from writeback.core.dn import is_within, rdn_value
from writeback.core.mapping import CN_MAX
from writeback.core.model import SkipReason
from writeback.core.rights import dsacls_lines

# The most characters AD takes in an attribute writeback writes: the schema's rangeUpper, from [MS-ADA1]/[MS-ADA3]
# (Active Directory Schema Attributes, https://learn.microsoft.com/openspecs/windows_protocols/ms-ada1, e.g.
# employeeID: "rangeUpper: 16"). sAMAccountName is limited to 20 for users by the SAM (pre-Windows 2000 logon
# name); cn 64 is writeback.core.mapping.CN_MAX. Samba accepts longer values where AD does not.
AD_LIMITS: Mapping[str, int] = {
    "cn": CN_MAX,
    "name": 255,
    "description": 1024,
    "displayName": 256,
    "sAMAccountName": 256,
    "mailNickname": 64,
    "mail": 256,
    "proxyAddresses": 1123,
    "info": 1024,
    "givenName": 64,
    "sn": 64,
    "department": 64,
    "company": 64,
    "title": 128,
    "l": 128,
    "st": 128,
    "co": 128,
    "postalCode": 40,
    "streetAddress": 1024,
    "mobile": 64,
    "telephoneNumber": 64,
    "employeeID": 16,
    "userPrincipalName": 1024,
    "preferredLanguage": 32,
}
# LDAP results a DC gives for the value itself (writeback.adapters.directory.translate keeps the same list).
REFUSED_VALUE_RESULTS = (
    "CONSTRAINT_VIOLATION",
    "INVALID_SYNTAX",
    "INVALID_DN_SYNTAX",
    "NAMING_VIOLATION",
    "OBJECT_CLASS_VIOLATION",
    "UNDEFINED_TYPE",
    "NOT_ALLOWED_ON_RDN",
)
LEAST_PRIVILEGE = "docs/least-privilege.md"
# Why a member is not written, as a count reads it: (one, many). The stored reason is SkipReason's sentence.
REASON_WORDS: Mapping[str, tuple[str, str]] = {
    SkipReason.CLOUD_ONLY.value: ("cloud-only user", "cloud-only users"),
    SkipReason.GUEST.value: ("guest", "guests"),
    SkipReason.SOFT_DELETED.value: ("soft-deleted user", "soft-deleted users"),
    SkipReason.NOT_FOUND_IN_AD.value: ("synced user not found in AD", "synced users not found in AD"),
    SkipReason.GROUP_OUT_OF_SCOPE.value: ("nested group out of scope", "nested groups out of scope"),
    SkipReason.UNKNOWN_OBJECT.value: ("member unknown to the replica", "members unknown to the replica"),
    SkipReason.LOCAL_IN_UNIVERSAL.value: (
        "local group in a universal group",
        "local groups in a universal group",
    ),
}
# Object kinds Graph names, for members skipped as "object type not written to AD".
KIND_WORDS: Mapping[str, tuple[str, str]] = {
    "device": ("device", "devices"),
    "servicePrincipal": ("service principal", "service principals"),
    "orgContact": ("contact", "contacts"),
}
MEMBER_ACTIONS = ("add_members", "remove_members")


@dataclass(frozen=True)
class Row:
    """What a log row stores, as these functions read it."""

    action: str
    result: str
    dn: str | None = None
    error: str | None = None
    detail: Mapping[str, Any] | None = None
    actor: str | None = None
    group_name: str | None = None


def reason_words(reason: str, n: int = 1, kind: str | None = None) -> str:
    """A skip reason as a count reads it: (cloud-only user, 1) -> "cloud-only user", 2 -> "cloud-only users";
    an object kind not written by its kind ("device"); any other reason as stored."""
    words = REASON_WORDS.get(reason)
    if reason == SkipReason.UNSUPPORTED_KIND.value:
        words = KIND_WORDS.get(kind or "", (f"{kind or 'object'} (type not written to AD)",) * 2)
    if words is None:
        return reason
    return words[0] if n == 1 else words[1]


def dn_name(dn: str) -> str:
    """The value of a DN's first RDN ("CN=Ana Lopez,OU=X" -> "Ana Lopez"); the DN itself if it does not parse."""
    try:
        return rdn_value(dn)
    except (ValueError, IndexError):
        return dn


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names(values: Sequence[str], total: int) -> str:
    listed = ", ".join(values)
    more = total - len(values)
    return listed + (f" and {more} more" if more > 0 and values else "")


def _export_status(result: str) -> str:
    return {"success": "success", "error": "failure", "held": "skipped", "info": "success"}.get(
        result, result
    )


def row_steps(row: Row) -> list[dict[str, str]]:
    """The steps of a log row, each {type, status, description}, saying what happened to whom. Rows of a
    provision on demand keep the steps they recorded (``detail["steps"]``)."""
    detail = dict(row.detail or {})
    if detail.get("steps"):
        return [dict(s) for s in detail["steps"]]
    target = "user account" if detail.get("target") == "user" else "group"
    where = row.dn or "(no AD object)"
    if row.actor:
        return [
            {
                "type": "request",
                "status": "success",
                "description": f"{detail.get('reason') or row.action.replace('_', ' ')}, asked by {row.actor}",
            }
        ]
    steps: list[dict[str, str]] = []
    if row.action == "skip_members":
        return _skip_steps(detail, where)
    if row.action == "skip":
        return [
            {"type": "matching", "status": "success", "description": f"AD {target} {where}"},
            {
                "type": "processing",
                "status": "skipped",
                "description": f"not written: {row.error or 'skipped'}",
            },
        ]
    if row.action in ("held", "staged_delete"):
        change = str(detail.get("change") or ("delete" if row.action == "staged_delete" else "change"))
        members = detail.get("members")
        what = f"{change.replace('_', ' ')}" + (f" of {_plural(int(members), 'member')}" if members else "")
        return [
            {"type": "matching", "status": "success", "description": f"AD {target} {where}"},
            {
                "type": "processing",
                "status": "skipped",
                "description": f"{what} held, not written: {row.error or 'held by a safety threshold'}",
            },
        ]
    steps.append({"type": "matching", "status": "success", "description": f"AD {target} {where}"})
    if detail.get("reason"):
        steps.append({"type": "processing", "status": "success", "description": str(detail["reason"])})
    steps.append(
        {"type": "export", "status": _export_status(row.result), "description": _export_text(row, detail)}
    )
    return steps


def _skip_steps(detail: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    members = list(detail.get("members") or [])
    count = int(detail.get("skipped") or len(members))
    reasons: Mapping[str, int] = detail.get("reasons") or {}
    if not reasons and members:
        counted: dict[str, int] = {}
        for m in members:
            counted[str(m.get("reason", "?"))] = counted.get(str(m.get("reason", "?")), 0) + 1
        reasons = counted
    parts = []
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        of_reason = [m for m in members if m.get("reason") == reason]
        kinds = {str(m.get("kind")) for m in of_reason}
        kind = kinds.pop() if len(kinds) == 1 else None
        named = [str(m.get("name") or m.get("id")) for m in of_reason]
        text = f"{n} {reason_words(reason, n, kind)} skipped"
        parts.append(text + (f": {_names(named, n)}" if named else ""))
    total = detail.get("of")
    head = (
        f"{int(total) - count} of {_plural(int(total), 'member')} matched; "
        if isinstance(total, int) and total >= count
        else f"{_plural(count, 'member')} not written: "
    )
    return [
        {"type": "matching", "status": "success", "description": f"AD group {where}"},
        {"type": "processing", "status": "skipped", "description": head + "; ".join(parts)},
    ]


def _export_text(row: Row, detail: Mapping[str, Any]) -> str:
    """What the export step did (or was to do, for a failed or pending row)."""
    done = row.result == "success"
    if row.action in MEMBER_ACTIONS:
        values = [dn_name(str(v)) for v in detail.get("member_values") or []]
        n = int(detail.get("members") or len(values))
        verb = "added" if row.action == "add_members" else "removed"
        text = f"{_plural(n, 'member')} {verb if done else ('to add' if verb == 'added' else 'to remove')}"
        text += f": {_names(values, n)}" if values else ""
    elif row.action == "create":
        n = int(detail.get("members") or 0)
        text = f"{'created' if done else 'to create'} {row.dn or ''}".strip()
        text += f" with {_plural(n, 'member')}" if n else ""
    elif row.action == "update":
        names = [str(m["name"]) for m in detail.get("modified") or []] or list(detail.get("attributes") or [])
        text = f"{_plural(len(names), 'attribute')} {'updated' if done else 'to update'}: {', '.join(names)}"
    elif row.action == "move":
        text = f"{'moved' if done else 'to move'} to {detail.get('new_dn') or '?'}"
    elif row.action == "delete":
        text = "deleted" if done else "to delete"
    else:
        text = row.action.replace("_", " ")
    if row.result == "pending":
        return f"{text} (being written)"
    if row.result in ("error", "interrupted"):
        return f"{text}: not done, {row.error or row.result}"
    return text


def _result_name(error: str) -> str | None:
    """The LDAP result name an error message quotes (translate_ldap_error writes 'RESULT_NAME: message')."""
    for word in error.replace(":", " ").replace(",", " ").split():
        if (word.isupper() and "_" in word) or word in ("BUSY", "UNAVAILABLE", "TIMEOUT"):
            return word
    return None


def _value_length(value: Any) -> int:
    if isinstance(value, list | tuple):
        return max((len(str(v)) for v in value), default=0)
    return len(str(value)) if value is not None else 0


def troubleshooting(row: Row, target_ou: str | None) -> list[str]:
    """Recommendations for a row that did not succeed (error, interrupted, held, skip), each naming the fix;
    none for a row that did. ``target_ou``: where writeback creates groups (a group outside it was taken over,
    and its rights are delegated on the group itself)."""
    detail = dict(row.detail or {})
    error = row.error or ""
    out: list[str] = []
    if row.result == "interrupted":
        out.append(
            "The run stopped while writing this change. Nothing to do: the next apply read AD again and "
            "finished or redid it. Check the service log for why the run stopped."
        )
    if row.result == "held" or row.action in ("held", "staged_delete"):
        if "may not write" in error:
            out.append(
                "Held because the service account lacks rights on this group: grant them (the note names the "
                f"dsacls lines; {LEAST_PRIVILEGE}). Allow does not release these."
            )
        else:
            out.append(
                "Held by a safety threshold. If the change is expected, Allow it once (Status page, or "
                "writeback allow); the next reconcile writes it. Otherwise fix the cloud side and it goes away."
            )
    if row.result not in ("error", "interrupted") and row.action != "skip":
        return out
    name = _result_name(error)
    if name == "INSUFFICIENT_ACCESS" or "insufficient access" in error.lower():
        out.append(_access_fix(row, detail, target_ou))
    elif name in REFUSED_VALUE_RESULTS:
        out.append(_value_fix(name, detail))
    elif name in ("ENTRY_ALREADY_EXISTS", "ALREADY_EXISTS"):
        out.append(
            "AD already has an object of that name or sAMAccountName. Rename or remove the other object, or "
            "map a different name (mapping), then reconcile."
        )
    elif name == "NO_SUCH_OBJECT":
        out.append(
            "The AD object (or its OU) is gone: it was deleted or moved by hand. The next deep reconcile (Status: "
            "Reconcile now) finds it again by its anchor or recreates it."
        )
    elif name in ("UNWILLING_TO_PERFORM",):
        out.append(
            "AD refused the operation itself (a protected or system object, or a move it does not allow). "
            "Check the service log's full message; writeback leaves protected groups alone."
        )
    elif name in ("SERVER_DOWN", "CONNECT_ERROR", "BUSY", "UNAVAILABLE", "TIMEOUT") or "unavailable" in error:
        out.append(
            "The DC could not be reached or was busy. The service retries by itself; check target.url and "
            "the network if it keeps failing."
        )
    elif error and not out:
        out.append(
            f"Read the error above; after fixing its cause, provision the group on demand to retry ({error})."
        )
    return out


def _access_fix(row: Row, detail: Mapping[str, Any], target_ou: str | None) -> str:
    needed = ["member"] if row.action in (*MEMBER_ACTIONS, "create") else []
    needed += [str(a) for a in detail.get("attributes") or []]
    needed = list(dict.fromkeys(needed)) or ["member"]
    dn = row.dn or ""
    taken_over = bool(dn) and target_ou is not None and not _under(dn, target_ou)
    if taken_over:
        lines = " ; ".join(dsacls_lines(dn, needed))
        return (
            f"INSUFFICIENT_ACCESS: the service account may not write {', '.join(needed)} on {dn}, a group taken "
            f"over outside the target OU. As a domain administrator, delegate Write Property on that group "
            f'({LEAST_PRIVILEGE}, "Groups taken over outside the target OU"; SVC is the service account): '
            f"{lines}"
        )
    return (
        f"INSUFFICIENT_ACCESS: the service account lacks a right in the target OU {target_ou or ''}. Delegate "
        f'the rights listed in {LEAST_PRIVILEGE} ("The rights, exactly": Create and Delete Group objects, '
        f"Write Property of {', '.join(needed)} on group objects), then reconcile."
    )


def _under(dn: str, ou: str) -> bool:
    try:
        return is_within(dn, ou)
    except (ValueError, IndexError):
        return dn.lower().endswith(ou.lower())


def _value_fix(name: str, detail: Mapping[str, Any]) -> str:
    modified = list(detail.get("modified") or [])
    over = []
    for m in modified:
        attr = str(m.get("name"))
        limit = AD_LIMITS.get(attr)
        length = _value_length(m.get("new"))
        if limit is not None and length > limit:
            over.append(f"{attr} has {length} characters, AD takes at most {limit}")
    if over:
        return (
            f"{name}: AD refused the value: {'; '.join(over)} (the schema's rangeUpper). Shorten it in the cloud, "
            "or map a shorter value (mapping), then reconcile."
        )
    limits = [
        f"{m.get('name')}: {AD_LIMITS[str(m.get('name'))]}" for m in modified if m.get("name") in AD_LIMITS
    ]
    known = f" AD's limits for the attributes written (characters): {', '.join(limits)}." if limits else ""
    return (
        f"{name}: AD refused a value it will refuse at every try (syntax, length or naming).{known} Fix the "
        "value in the cloud or its mapping; writeback retries only when it changes."
    )
