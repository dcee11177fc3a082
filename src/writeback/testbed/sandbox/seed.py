"""Fill the sandbox directory over LDAPS: OUs, users, on-premises groups; and read the accounts back.

Adds are pipelined (python-ldap's asynchronous ``add_ext`` with a window of operations in flight): one
Samba in single-process mode creates about 115 users a second this way, so 20,000 users take about three
minutes instead of the quarter of an hour one synchronous add at a time would take.

Samba's cost per add grows with the directory: ldb keeps one index record per value of objectClass,
objectCategory, sAMAccountType, primaryGroupID… listing every user, and copies it on each add. Measured on
2 vCPUs with the TDB backend: 200 users/s at the start, 80/s at 10,000, 14/s at 100,000, 67 minutes in all;
with LMDB (what the sandbox uses now) 39 minutes. That is why big directories are seeded once and
snapshotted (:mod:`writeback.testbed.sandbox.snapshot`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap
from ldap.controls import SimplePagedResultsControl

from writeback.errors import SandboxError
from writeback.testbed.sandbox.layout import CLOUD_USERS_OU, ONPREM_GROUPS_OU, STAFF_OU, WRITEBACK_OU
from writeback.testbed.sandbox.ldapconn import describe

Entry = tuple[str, list[tuple[str, list[bytes]]]]
GLOBAL_SECURITY_GROUP = -2147483646  # 0x80000002: what an on-premises admin creates by default

USER_ATTRIBUTES = (
    "objectGUID", "objectSid", "sAMAccountName", "userPrincipalName", "givenName", "sn", "displayName",
    "department", "title", "mail", "employeeID", "userAccountControl", "description", "member",
)  # fmt: skip


@dataclass(frozen=True)
class Account:
    """An AD user or group as read back: the identifiers a synced cloud twin carries, and its attributes."""

    dn: str
    object_guid: uuid.UUID
    sid: str
    sam: str
    kind: str  # "user" or "group"
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name)
        return values[0] if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "dn": self.dn,
            "object_guid": str(self.object_guid),
            "sid": self.sid,
            "sam": self.sam,
            "kind": self.kind,
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(
            dn=data["dn"],
            object_guid=uuid.UUID(data["object_guid"]),
            sid=data["sid"],
            sam=data["sam"],
            kind=data["kind"],
            attributes=data["attributes"],
        )


def save_accounts(path: Path, accounts: Iterable[Account]) -> None:
    """Keep what was read back after seeding, so a restored snapshot need not read 20,000 users again."""
    path.write_text(json.dumps([a.to_json() for a in accounts]), encoding="utf-8")


def load_accounts(path: Path) -> list[Account] | None:
    """The accounts saved by :func:`save_accounts`, or None when there are none (or they are unreadable)."""
    try:
        return [Account.from_json(item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sid_to_str(raw: bytes) -> str:
    """Binary objectSid -> 'S-1-5-21-...' (MS-DTYP 2.4.2: revision, count, 48-bit authority, LE sub-ids)."""
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ValueError("not a binary SID")
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i : 12 + 4 * i], "little") for i in range(raw[1])]
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


def ou_entries(base_dn: str) -> list[Entry]:
    """OU=Staff (people), OU=Writeback (empty, the target for written-back groups), OU=Groups (on-prem),
    OU=Cloud Users (empty, where writeback creates accounts for cloud-only members: [users] target_ou)."""
    descriptions = {
        STAFF_OU: "People (synced to Entra ID)",
        WRITEBACK_OU: "Groups written back from Entra ID",
        ONPREM_GROUPS_OU: "Groups managed on-premises",
        CLOUD_USERS_OU: "Accounts for cloud-only members, created by writeback",
    }
    return [
        (dn, [("objectClass", [b"top", b"organizationalUnit"]), ("description", [text.encode()])])
        for dn, text in descriptions.items()
        if dn.endswith(base_dn)
    ]


def group_entry(sam: str, display_name: str, description: str, member_dns: Iterable[str]) -> Entry:
    """An on-premises global security group in OU=Groups."""
    attrs: list[tuple[str, list[bytes]]] = [
        ("objectClass", [b"top", b"group"]),
        ("sAMAccountName", [sam.encode()]),
        ("displayName", [display_name.encode()]),
        ("groupType", [str(GLOBAL_SECURITY_GROUP).encode()]),
    ]
    if description:
        attrs.append(("description", [description.encode()]))
    members = [dn.encode() for dn in member_dns]
    if members:
        attrs.append(("member", members))
    return (f"CN={sam},{ONPREM_GROUPS_OU}", attrs)


def add_all(
    conn: Any,
    entries: Iterable[Entry],
    *,
    window: int = 64,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add ``entries`` with up to ``window`` requests in flight; return how many were added.

    Stops at the first refusal with a SandboxError naming the refused entry.
    """
    pending: dict[int, str] = {}
    added = 0

    def collect_one() -> None:
        nonlocal added
        try:
            _, _, msgid, _ = conn.result3(ldap.RES_ANY, all=1, timeout=120)
        except ldap.TIMEOUT as exc:
            raise SandboxError("the sandbox DC did not answer an add within 120 s") from exc
        except ldap.LDAPError as exc:
            raise _add_error(exc, pending) from exc
        pending.pop(msgid, None)
        added += 1
        if progress is not None and added % 1000 == 0:
            progress(added)

    try:
        for dn, attrs in entries:
            while len(pending) >= window:
                collect_one()
            pending[conn.add_ext(dn, attrs)] = dn
        while pending:
            collect_one()
    except ldap.LDAPError as exc:  # add_ext itself failed: the connection is gone
        raise SandboxError(f"adding entries to the sandbox DC failed: {describe(exc)}") from exc
    return added


def _msgid(exc: ldap.LDAPError) -> int:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return int(info.get("msgid", -1))


def _add_error(exc: ldap.LDAPError, pending: dict[int, str]) -> SandboxError:
    dn = pending.get(_msgid(exc), "an entry")
    return SandboxError(f"the sandbox DC refused to add {dn}: {describe(exc)}")


def paged_search(
    conn: Any, base: str, filterstr: str, attrs: Iterable[str], page_size: int = 1000
) -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    """Every entry under ``base`` matching ``filterstr``, read in pages (AD's MaxPageSize is 1,000)."""
    control = SimplePagedResultsControl(True, size=page_size, cookie="")
    attrlist = list(attrs)
    try:
        while True:
            msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, filterstr, attrlist, serverctrls=[control])
            _, data, _, controls = conn.result3(msgid)
            for dn, entry in data:
                if dn:  # skip search references
                    yield dn, entry
            cookie = next(
                (c.cookie for c in controls if c.controlType == SimplePagedResultsControl.controlType), b""
            )
            if not cookie:
                return
            control.cookie = cookie
    except ldap.LDAPError as exc:
        raise SandboxError(f"reading {base} from the sandbox DC failed: {describe(exc)}") from exc


def read_accounts(conn: Any, base: str, filterstr: str, kind: str) -> list[Account]:
    """Users or groups under ``base`` with their identifiers, sorted by DN for deterministic output."""
    accounts = []
    for dn, entry in paged_search(conn, base, filterstr, USER_ATTRIBUTES):
        text = {
            key: [v.decode("utf-8", errors="replace") for v in values]
            for key, values in entry.items()
            if key not in ("objectGUID", "objectSid")
        }
        accounts.append(
            Account(
                dn=dn,
                object_guid=uuid.UUID(bytes_le=entry["objectGUID"][0]),
                sid=sid_to_str(entry["objectSid"][0]),
                sam=text["sAMAccountName"][0],
                kind=kind,
                attributes=text,
            )
        )
    return sorted(accounts, key=lambda a: a.dn.lower())


def read_seeded(conn: Any) -> list[Account]:
    """The sandbox's own accounts: the users in OU=Staff and the groups in OU=Groups."""
    users = read_accounts(conn, STAFF_OU, "(&(objectCategory=person)(objectClass=user))", "user")
    groups = read_accounts(conn, ONPREM_GROUPS_OU, "(objectClass=group)", "group")
    return users + groups
