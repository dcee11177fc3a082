"""Pre-flight check of the rights writeback needs in its target OU, as the domain controller computes them.

AD (and Samba) expose the caller's effective rights as constructed attributes:
``allowedChildClassesEffective`` on a container lists the classes the caller may create there, and
``allowedAttributesEffective`` on an object the attributes it may write. Reading them asks the DC itself, so
the answer honours inheritance, deny ACEs and group nesting without re-implementing the access check here.
The Delete right is not exposed this way; it shows up as INSUFFICIENT_ACCESS at the first delete.
"""

from __future__ import annotations

from collections.abc import Sequence

import ldap

from writeback.directory.codec import lower_keys
from writeback.directory.connection import LdapSession

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
