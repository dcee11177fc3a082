"""Pre-flight check of the rights writeback needs in its target OU, as the domain controller computes them.

AD (and Samba) expose the caller's effective rights as constructed attributes:
``allowedChildClassesEffective`` on a container lists the classes the caller may create there, and
``allowedAttributesEffective`` on an object the attributes it may write. Reading them asks the DC itself, so
the answer honours inheritance, deny ACEs and group nesting without re-implementing the access check here.
The Delete right is not exposed this way: it is read from the OU's DACL for the account's ``tokenGroups``
(:mod:`writeback.adapters.directory.acl`). When the account cannot read either, the check says so and moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import ldap
from ldap.controls import RequestControl
from ldap.filter import escape_filter_chars

from writeback.adapters.directory.acl import (
    SD_FLAGS_DACL_ONLY,
    SD_FLAGS_OID,
    may_delete_children,
    parse_dacl,
    token_sids,
)
from writeback.adapters.directory.codec import lower_keys, or_filter, sid_to_str
from writeback.adapters.directory.connection import LdapSession
from writeback.adapters.directory.entries import ALLOWED_ATTRIBUTES_EFFECTIVE, find_anchor
from writeback.core.dn import is_within
from writeback.errors import DirectoryError

log = logging.getLogger(__name__)

# Enough to show the pattern without flooding the report when a whole OU is read-only.
MAX_LISTED = 5


def _values(raw: dict[str, list[bytes]], name: str) -> set[str]:
    return {v.decode("utf-8").lower() for v in lower_keys(raw).get(name.lower(), [])}


def check_write_access(
    session: LdapSession, ou_dn: str, bind_dn: str, attributes: Sequence[str]
) -> list[str]:
    """Problems found (empty list when writeback can create groups in ``ou_dn`` and write ``attributes`` of
    the groups already there)."""
    entries = session.search(
        ou_dn,
        ldap.SCOPE_BASE,
        "(objectClass=*)",
        ["allowedChildClassesEffective"],
        paged=False,
        missing_ok=True,
    )
    if not entries:
        return [f"{ou_dn} does not exist or {bind_dn} cannot read it"]
    problems: list[str] = []
    if "group" not in _values(entries[0][1], "allowedChildClassesEffective"):
        problems.append(
            f"{bind_dn} cannot create groups in {ou_dn}: delegate 'Create Group objects' on this OU"
        )
    if may_delete_groups(session, ou_dn, bind_dn) is False:
        problems.append(
            f"{bind_dn} cannot delete groups in {ou_dn}: delegate 'Delete Group objects' on this OU "
            "(needed for cloud deletes and for moves out of this OU)"
        )
    groups = session.search(ou_dn, ldap.SCOPE_SUBTREE, "(objectClass=group)", ["allowedAttributesEffective"])
    for attribute in attributes:
        refused = [
            dn for dn, raw in groups if attribute.lower() not in _values(raw, "allowedAttributesEffective")
        ]
        if refused:
            listed = "; ".join(refused[:MAX_LISTED]) + (" …" if len(refused) > MAX_LISTED else "")
            problems.append(
                f"{bind_dn} cannot write {attribute} on {len(refused)} group(s) in {ou_dn} ({listed}): "
                f"delegate 'Write {attribute}' on group objects in this OU"
            )
    return problems


def may_delete_groups(session: LdapSession, ou_dn: str, bind_dn: str) -> bool | None:
    """Whether ``bind_dn`` may delete groups in ``ou_dn``, from the OU's DACL and the account's tokenGroups;
    None when the account cannot read them (the check is then skipped with a warning)."""
    try:
        sd = session.search(
            ou_dn,
            ldap.SCOPE_BASE,
            "(objectClass=*)",
            ["nTSecurityDescriptor"],
            paged=False,
            controls=[RequestControl(SD_FLAGS_OID, True, SD_FLAGS_DACL_ONLY)],
        )
        me = session.search(
            bind_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectSid", "tokenGroups"], paged=False
        )
    except DirectoryError as exc:
        log.warning("cannot check the Delete right in %s: %s", ou_dn, exc)
        return None
    descriptor = lower_keys(sd[0][1]).get("ntsecuritydescriptor") if sd else None
    mine = lower_keys(me[0][1]) if me else {}
    if not descriptor or not mine.get("objectsid"):
        log.warning(
            "cannot check the Delete right in %s: the OU's DACL or %s's SIDs are not readable", ou_dn, bind_dn
        )
        return None
    try:
        dacl = parse_dacl(descriptor[0])
        token = token_sids(
            sid_to_str(mine["objectsid"][0]), [sid_to_str(v) for v in mine.get("tokengroups", [])]
        )
    except ValueError as exc:
        log.warning("cannot check the Delete right in %s: %s", ou_dn, exc)
        return None
    return may_delete_children(dacl, token)


def unwritable_managed_groups(
    session: LdapSession,
    base_dn: str,
    anchors: Sequence[str],
    prefixes: Sequence[str],
    needed: Sequence[str],
    outside: Sequence[str],
) -> list[tuple[str, tuple[str, ...]]]:
    """The groups carrying an anchor (``prefixes`` in one of ``anchors``) outside the OUs ``outside`` whose
    ``allowedAttributesEffective`` lacks some of ``needed``: (DN, the attributes missing). One paged search,
    no members read: ``config check`` lists the groups taken over outside the target OU that the plan would
    hold (writeback.core.rights)."""
    if not anchors:
        return []
    flt = or_filter([f"({a}={escape_filter_chars(p)}*)" for a in anchors for p in prefixes])
    entries = session.search(
        base_dn, ldap.SCOPE_SUBTREE, f"(&(objectClass=group){flt})", [*anchors, ALLOWED_ATTRIBUTES_EFFECTIVE]
    )
    out: list[tuple[str, tuple[str, ...]]] = []
    for dn, raw in entries:
        if not dn or any(is_within(dn, ou) for ou in outside):
            continue
        if find_anchor(lower_keys(raw), anchors, prefixes) is None:
            continue
        allowed = _values(raw, ALLOWED_ATTRIBUTES_EFFECTIVE)
        missing = tuple(a for a in needed if a.lower() not in allowed)
        if missing:
            out.append((dn, missing))
    return out


def attributes_not_writable(
    session: LdapSession, dns: Sequence[str], needed: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """Of the objects ``dns``, those whose ``allowedAttributesEffective`` lacks some of ``needed``: (DN, the
    attributes missing), one base read each (``config check``: the SOA originals writeback has not stamped yet,
    which no anchor search finds). An object that is gone is left out: the plan reports it."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for dn in dns:
        try:
            entries = session.search(
                dn, ldap.SCOPE_BASE, "(objectClass=*)", [ALLOWED_ATTRIBUTES_EFFECTIVE], paged=False
            )
        except DirectoryError as exc:  # noSuchObject comes back translated: the plan says it is missing
            log.debug("cannot read %s: %s", dn, exc)
            continue
        for entry_dn, raw in entries:
            allowed = _values(raw, ALLOWED_ATTRIBUTES_EFFECTIVE)
            missing = tuple(a for a in needed if a.lower() not in allowed)
            if entry_dn and missing:
                out.append((entry_dn, missing))
    return out
