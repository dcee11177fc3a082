"""The directory's limit for ``scripts/bench users``: the engine's accounts and groups, written by the fewest
LDAP operations a python-ldap client can use.

What the first apply wrote is read back from AD (every attribute the engine sets on an account it creates:
names, userAccountControl, the anchors, Cloud Sync's default mapped attributes; and each group with its
members), then copied into the limit's OUs on one connection, one operation at a time, timed from the first
add to the last answer:

- one add per account, carrying all its attributes and a random password as ``unicodePwd`` (the quoted
  password in UTF-16LE, over the same LDAPS connection, generated per account by the same generator as the
  engine's, :func:`writeback.adapters.directory.adapter.new_password`);
- then one add per group carrying its attributes and its first 5,000 members (the accounts, which exist by
  then), one modify per further 5,000.

The engine sends the same operations: its plan adds each group's new accounts in an ``ADD_MEMBERS`` after
the creates, and its write order (:func:`writeback.app.engine.write_order`) creates the accounts first and
lets each group's add carry them (small: 110 adds and no modify on both sides). Names (CN, sAMAccountName, userPrincipalName) are the engine's
own: the limit runs after the engine's objects are gone (the sandbox restored, or the engine's OUs deleted).
The anchors read ``Copy_<id>`` (same length as ``User_``) and the groups' ``Limit_<id>``, so no writeback
ever takes the copies for its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ldap

from benchmarks.bench import limit as group_limit
from benchmarks.bench.ldaptools import GroupEntry, connection
from writeback.adapters.directory.adapter import new_password
from writeback.config import DEFAULT_USER_ATTRIBUTES
from writeback.core.dn import normalize_dn
from writeback.testbed.sandbox import SandboxInfo
from writeback.testbed.sandbox.seed import paged_search

USER_ANCHOR_PREFIX = b"User_"
COPY_ANCHOR_PREFIX = b"Copy_"  # same length as "User_": the copies must not look like writeback's accounts
ANCHOR_ATTRIBUTES = ("msDS-ExternalDirectoryObjectId", "adminDescription")
# What writeback writes in the add of an account it creates (core.planning._member_account), besides
# objectClass and the password.
ACCOUNT_ATTRIBUTES = (
    "sAMAccountName",
    "userPrincipalName",
    "userAccountControl",
    *ANCHOR_ATTRIBUTES,
    *DEFAULT_USER_ATTRIBUTES,
)
USER_OBJECT_CLASSES = [b"top", b"person", b"organizationalPerson", b"user"]


@dataclass(frozen=True)
class AccountEntry:
    """A user account as stored in AD: its DN, the attributes writeback writes, and pwdLastSet."""

    dn: str
    attributes: dict[str, list[bytes]]
    pwd_last_set: int = 0

    @property
    def anchor(self) -> str | None:
        values = self.attributes.get("msDS-ExternalDirectoryObjectId")
        return values[0].decode() if values else None


@dataclass
class UsersLimitResult:
    seconds: float
    operations: dict[str, int] = field(default_factory=dict)
    accounts: int = 0
    groups: int = 0
    values: int = 0


def read_accounts(conn: Any, base: str) -> list[AccountEntry]:
    """Every user account under ``base`` with the attributes writeback writes (and pwdLastSet)."""
    wanted = {a.lower(): a for a in ACCOUNT_ATTRIBUTES}
    found = []
    for dn, raw in paged_search(
        conn, base, "(&(objectCategory=person)(objectClass=user))", [*ACCOUNT_ATTRIBUTES, "pwdLastSet"]
    ):
        attrs = {wanted[k.lower()]: v for k, v in raw.items() if k.lower() in wanted}
        pwd = next((v for k, v in raw.items() if k.lower() == "pwdlastset"), [b"0"])
        found.append(AccountEntry(dn, attrs, int(pwd[0])))
    return found


def account_modlist(account: AccountEntry) -> list[tuple[str, list[bytes]]]:
    """The add of ``account``'s copy without its password: the same attributes and values, the anchors
    ``Copy_<id>`` instead of ``User_<id>``."""
    modlist: list[tuple[str, list[bytes]]] = [("objectClass", USER_OBJECT_CLASSES)]
    for name, values in account.attributes.items():
        if name in ANCHOR_ATTRIBUTES:
            values = [COPY_ANCHOR_PREFIX + v.removeprefix(USER_ANCHOR_PREFIX) for v in values]
        modlist.append((name, values))
    return modlist


def password_value() -> bytes:
    """A fresh random password as AD's unicodePwd wants it: in double quotes, UTF-16LE."""
    return ('"' + new_password() + '"').encode("utf-16-le")


def write_users_limit(
    info: SandboxInfo,
    accounts: Sequence[AccountEntry],
    groups: Sequence[GroupEntry],
    moves: dict[str, str],
) -> UsersLimitResult:
    """Write copies of ``accounts`` and then ``groups`` and time it. ``moves`` maps each source OU (as the
    engine wrote it) to the OU its copies go to; a member DN is moved with its object.

    Only the writes are timed: the connection is opened and bound (over LDAPS) before the clock starts.
    """

    def moved(dn: str) -> str:
        key = normalize_dn(dn)
        for source, target in moves.items():
            if key.endswith("," + normalize_dn(source)):
                return group_limit._relocate(dn, source, target)
        return dn

    group_base = next(iter(moves))
    ordered = group_limit._children_first(groups, group_base)
    ops = {"add": 0, "modify": 0}
    values = 0
    with connection(info) as conn:
        started = time.perf_counter()
        for account in accounts:
            conn.add_ext_s(moved(account.dn), [*account_modlist(account), ("unicodePwd", [password_value()])])
            ops["add"] += 1
        for group in ordered:
            members = [moved(m).encode() for m in group.members]
            modlist = group_limit._copy_attributes(group)
            if members:
                modlist.append(("member", members[: group_limit.CHUNK]))
            dn = moved(group.dn)
            conn.add_ext_s(dn, modlist)
            ops["add"] += 1
            for start in range(group_limit.CHUNK, len(members), group_limit.CHUNK):
                conn.modify_ext_s(dn, [(ldap.MOD_ADD, "member", members[start : start + group_limit.CHUNK])])
                ops["modify"] += 1
            values += len(members)
        seconds = time.perf_counter() - started
    return UsersLimitResult(seconds, ops, len(accounts), len(ordered), values)
