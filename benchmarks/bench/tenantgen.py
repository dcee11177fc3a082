"""A synthetic tenant over real AD accounts: synced users, static, nested and dynamic groups (deterministic).

The synced users are the twins of AD accounts read from the sandbox DC (real objectSid and objectGUID, built
with the sandbox's own :func:`writeback.testbed.sandbox.tenant.synced_user`), so the engine resolves every member
exactly as in a hybrid tenant. Group sizes follow a heavy-tailed distribution, as in real tenants: many
small groups, a few big ones, and one group holding every user.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks.bench.sizes import Size
from writeback.core.rules import RuleContext, compile_rule
from writeback.testbed.sandbox.seed import Account
from writeback.testbed.sandbox.tenant import synced_user

DYNAMIC_RULES = (
    'user.department -eq "Sales"',
    'user.department -eq "Finance" -and user.accountEnabled -eq true',
    'user.department -in ["IT", "Research"]',
    'user.jobTitle -startsWith "Support"',
    '(user.department -eq "Marketing") -or (user.department -eq "Legal")',
    'user.displayName -match "^Noor"',
    'user.department -eq "Engineering" -and -not (user.jobTitle -eq "QA Engineer")',
    'user.userPrincipalName -startsWith "s"',
)
CLOUD_ONLY_GROUP_SHARE = 10  # every 10th static group also holds a few cloud-only users


@dataclass
class GeneratedTenant:
    """The tenant document for the emulator plus what the benchmark needs to know about it."""

    document: dict[str, Any]
    synced_ids: list[str]  # cloud ids of the synced users, in AD order
    user_dn: dict[str, str]  # synced cloud id -> AD DN
    static_ids: list[str]  # assigned-membership groups other than the big one
    dynamic_ids: list[str]
    big_id: str | None
    members: dict[str, list[str]] = field(default_factory=dict)  # static groups: direct member ids

    @property
    def group_ids(self) -> list[str]:
        return [g["id"] for g in self.document["groups"]]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _group(gid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": gid,
        "displayName": name,
        "description": f"writeback benchmark group {name}",
        "mailNickname": name.replace(" ", "").lower(),
        "mailEnabled": False,
        "securityEnabled": True,
        "groupTypes": [],
        **extra,
    }


def _sizes(rng: random.Random, count: int, total: int, cap: int) -> list[int]:
    """``count`` heavy-tailed group sizes (Pareto) between 1 and ``cap`` summing to about ``total``."""
    if count <= 0:
        return []
    weights = [rng.paretovariate(1.3) for _ in range(count)]
    scale = total / sum(weights)
    sizes = [max(1, min(cap, round(w * scale))) for w in weights]
    # Hand what the cap cut off (or the rounding added) back to the groups that still have room.
    diff = total - sum(sizes)
    order = sorted(range(count), key=lambda i: sizes[i])
    while diff != 0:
        moved = 0
        for i in order:
            if diff > 0 and sizes[i] < cap:
                sizes[i] += 1
                diff -= 1
                moved += 1
            elif diff < 0 and sizes[i] > 1:
                sizes[i] -= 1
                diff += 1
                moved += 1
            if diff == 0:
                break
        if moved == 0:
            break
    return sizes


def generate(
    size: Size,
    accounts: Sequence[Account],
    *,
    tenant_id: str,
    client_id: str,
    client_secret: str,
    seed: int = 20240630,
) -> GeneratedTenant:
    """Build the tenant for ``size`` over ``accounts`` (AD users; exactly ``size.users`` are used)."""
    rng = random.Random(f"{seed}-{size.name}")
    users = [synced_user(a) for a in accounts[: size.users]]
    synced_ids = [u["id"] for u in users]
    user_dn = {u["id"]: a.dn for u, a in zip(users, accounts, strict=False)}
    cloud_only: list[dict[str, Any]] = [
        {
            "id": _uuid(rng),
            "displayName": f"Cloud Only {i}",
            "userPrincipalName": f"cloudonly{i}@bench.onmicrosoft.com",
            "accountEnabled": True,
            "userType": "Member",
            "department": "Sales" if i % 2 else "IT",
        }
        for i in range(size.cloud_only)
    ]
    all_users = users + cloud_only

    ids = [_uuid(rng) for _ in range(size.groups)]
    groups: list[dict[str, Any]] = []
    big_id = ids[0] if size.big_group else None
    dynamic_ids = ids[1 : 1 + size.dynamic] if big_id else ids[: size.dynamic]
    dynamic = set(dynamic_ids)
    static_ids = [g for g in ids if g != big_id and g not in dynamic]

    # Dynamic groups: their members are what the rule matches, counted here to size the static groups.
    context = RuleContext(now=datetime.now(UTC))
    dynamic_total = 0
    for n, gid in enumerate(dynamic_ids):
        rule = DYNAMIC_RULES[n % len(DYNAMIC_RULES)]
        dynamic_total += len(compile_rule(rule).filter(all_users, context))
        groups.append(
            _group(
                gid,
                f"Bench Dynamic {n:05d}",
                groupTypes=["DynamicMembership"],
                membershipRule=rule,
                membershipRuleProcessingState="On",
            )
        )

    members: dict[str, list[str]] = {}
    if big_id:
        members[big_id] = synced_ids[: size.big_group]
    # Nesting: a DAG (a parent always comes before its child in ``static_ids``), plus one child in the big group.
    nested_pairs: list[tuple[str, str]] = []
    for n in range(min(size.nested, len(static_ids) // 2)):
        parent = static_ids[n]
        child = static_ids[len(static_ids) // 2 + n]
        nested_pairs.append((parent, child))
    if big_id and static_ids:
        nested_pairs.append((big_id, static_ids[-1]))
    cloud_only_ids = [str(u["id"]) for u in cloud_only]
    co_groups = static_ids[::CLOUD_ONLY_GROUP_SHARE] if cloud_only_ids else []
    co_per_group = min(3, len(cloud_only_ids))

    fixed = (
        (size.big_group if big_id else 0) + dynamic_total + len(nested_pairs) + co_per_group * len(co_groups)
    )
    static_total = max(size.memberships - fixed, len(static_ids))
    cap = min(size.max_members, len(synced_ids), max(size.big_group // 2, 1))
    for gid, count in zip(static_ids, _sizes(rng, len(static_ids), static_total, cap), strict=True):
        members[gid] = rng.sample(synced_ids, count)
    for parent, child in nested_pairs:
        members[parent].append(child)
    for i, gid in enumerate(co_groups):
        members[gid].extend(cloud_only_ids[(i + k) % len(cloud_only_ids)] for k in range(co_per_group))

    for gid in ids:
        if gid == big_id:
            groups.insert(0, _group(gid, "Bench All Users", members=list(members[gid])))
    for n, gid in enumerate(static_ids):
        groups.append(_group(gid, f"Bench Group {n:05d}", members=list(members[gid])))
    document = {
        "tenant_id": tenant_id,
        "apps": [{"client_id": client_id, "client_secret": client_secret}],
        "users": all_users,
        "groups": groups,
    }
    return GeneratedTenant(
        document=document,
        synced_ids=synced_ids,
        user_dn=user_dn,
        static_ids=static_ids,
        dynamic_ids=list(dynamic_ids),
        big_id=big_id,
        members=members,
    )
