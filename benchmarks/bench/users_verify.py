"""Correctness checks of ``scripts/bench users`` (pure): one account per cloud-only member, anchored and with a
password set, and every group holding exactly its members' accounts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from benchmarks.bench.ldaptools import GroupEntry
from benchmarks.bench.users_limit import ANCHOR_ATTRIBUTES, AccountEntry
from writeback.core.dn import normalize_dn

LIMIT = 10  # problems listed per check


def check_accounts(accounts: Sequence[AccountEntry], member_ids: Sequence[str], prefix: str) -> list[str]:
    """Each member has exactly one account, anchored ``<prefix><id>`` in both anchor attributes, with a
    password set in its add (pwdLastSet not 0); no other account is there."""
    problems: list[str] = []
    anchors: Counter[str] = Counter()
    for account in accounts:
        values = {a: [v.decode() for v in account.attributes.get(a, [])] for a in ANCHOR_ATTRIBUTES}
        found = {v for vs in values.values() for v in vs}
        if len(found) != 1 or any(len(vs) != 1 for vs in values.values()):
            problems.append(f"{account.dn}: anchors {values}, expected one {prefix}<id> in each of both")
            continue
        anchor = found.pop()
        if not anchor.startswith(prefix):
            problems.append(f"{account.dn}: anchor {anchor!r} does not start with {prefix!r}")
            continue
        anchors[anchor[len(prefix) :]] += 1
        if account.pwd_last_set == 0:
            problems.append(f"{account.dn}: no password set (pwdLastSet 0)")
    expected = set(member_ids)
    problems += [f"member {uid}: {n} accounts" for uid, n in anchors.items() if n > 1]
    problems += [f"member {uid}: no account" for uid in sorted(expected - anchors.keys())]
    problems += [f"account of {uid}: not a member of any group" for uid in sorted(anchors.keys() - expected)]
    return problems


def check_groups(
    groups: Sequence[GroupEntry],
    accounts: Sequence[AccountEntry],
    expected: Mapping[str, Sequence[str]],
    group_prefix: str,
    account_prefix: str,
) -> list[str]:
    """Each group (anchored ``<group_prefix><cloud id>``) holds exactly the accounts of its members."""
    by_dn = {normalize_dn(a.dn): (a.anchor or "").removeprefix(account_prefix) for a in accounts}
    problems: list[str] = []
    seen: set[str] = set()
    for group in groups:
        anchor = group.anchor or ""
        if not anchor.startswith(group_prefix):
            problems.append(f"{group.dn}: unexpected anchor {anchor!r}")
            continue
        gid = anchor[len(group_prefix) :]
        seen.add(gid)
        if gid not in expected:
            problems.append(f"group {gid} in AD but not expected")
            continue
        held = [by_dn.get(normalize_dn(m), f"not an account: {m}") for m in group.members]
        if sorted(held) != sorted(expected[gid]):
            missing = set(expected[gid]) - set(held)
            extra = [h for h in held if h not in set(expected[gid])]
            problems.append(
                f"group {gid}: {len(held)} members in AD, expected {len(expected[gid])} "
                f"(missing {sorted(missing)[:3]}, unexpected {extra[:3]})"
            )
    problems += [f"group {gid} missing in AD" for gid in expected if gid not in seen]
    return problems
