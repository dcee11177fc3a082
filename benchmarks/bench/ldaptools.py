"""The benchmark's own LDAP work on the sandbox DC: its OUs, top-up users, reading back what was written.

This is harness code (python-ldap directly, like the sandbox's seeding), not the engine: it prepares the
directory and checks the result, and none of it is timed as the engine's work.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from writeback.testbed.sandbox import SandboxInfo
from writeback.testbed.sandbox.ldapconn import connect as sandbox_connect
from writeback.testbed.sandbox.people import Person, generated_people
from writeback.testbed.sandbox.seed import Account, add_all, paged_search, read_accounts

TREE_DELETE_OID = "1.2.840.113556.1.4.805"
USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
GROUP_ATTRIBUTES = (
    "sAMAccountName",
    "groupType",
    "description",
    "displayName",
    "msDS-ExternalDirectoryObjectId",
    "adminDescription",
)


def connect(info: SandboxInfo) -> Any:
    """A python-ldap connection bound as the sandbox administrator over LDAPS (certificate verified)."""
    return sandbox_connect(info.ldap_url, info.ca_file, info.bind_dn, info.bind_password)


@contextlib.contextmanager
def connection(info: SandboxInfo) -> Iterator[Any]:
    conn = connect(info)
    try:
        yield conn
    finally:
        conn.unbind_s()


def add_ou(conn: Any, dn: str) -> None:
    conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"])])


def staff_accounts(conn: Any, base: str, limit: int) -> list[Account]:
    """Up to ``limit`` users under ``base`` (sorted by DN, so the same directory yields the same list)."""
    return read_accounts(conn, base, USER_FILTER, "user")[:limit]


def create_users(conn: Any, ou: str, count: int, tag: str) -> list[Account]:
    """Create ``count`` realistic users in ``ou`` (unique sAMAccountNames ``b<tag><n>``) and read them back."""
    people = []
    for n, p in enumerate(generated_people(count, seed=random.Random(tag).randrange(1 << 30))):
        sam = f"b{tag}{n:06d}"
        people.append(
            Person(
                sam=sam,
                cn=f"{p.given_name} {p.surname} {sam}",
                given_name=p.given_name,
                surname=p.surname,
                department=p.department,
                title=p.title,
                employee_id=f"9{n:07d}",
                enabled=p.enabled,
                city=p.city,
            )
        )
    add_all(conn, ((p.dn(ou), p.ldap_attributes()) for p in people))
    return read_accounts(conn, ou, USER_FILTER, "user")


@dataclass(frozen=True)
class GroupEntry:
    """A group as stored in AD: its DN, the attributes writeback maps, and its member DNs."""

    dn: str
    attributes: dict[str, list[bytes]]
    members: list[str]

    @property
    def anchor(self) -> str | None:
        values = self.attributes.get("msDS-ExternalDirectoryObjectId") or self.attributes.get(
            "adminDescription"
        )
        return values[0].decode() if values else None


def read_groups(conn: Any, base: str) -> list[GroupEntry]:
    """Every group under ``base`` with its mapped attributes and all its members.

    Samba returns a whole ``member`` attribute at once (AD would cap it at 1,500 values per read and need
    ranged retrieval; the engine does that, this checker runs against the sandbox only).
    """
    wanted = {a.lower(): a for a in GROUP_ATTRIBUTES}
    groups = []
    for dn, raw in paged_search(conn, base, "(objectClass=group)", [*GROUP_ATTRIBUTES, "member"]):
        attrs = {wanted[k.lower()]: v for k, v in raw.items() if k.lower() in wanted}
        members = next((v for k, v in raw.items() if k.lower() == "member"), [])
        groups.append(GroupEntry(dn, attrs, [m.decode() for m in members]))
    return groups
