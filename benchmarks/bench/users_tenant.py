"""The users benchmark's tenant: cloud-only members in assigned groups (deterministic, pure).

Every member is cloud-only (no onPremisesSecurityIdentifier), enabled, ``userType`` Member, with the
properties Cloud Sync's default user mappings read (displayName, givenName, surname, department, companyName,
country, city, employeeId, ...), so ``[users] provision = "cloud_members"`` creates one AD account per member
with every default attribute set. Each member is in one group (``i % groups``); every
``SECOND_GROUP_EVERY``-th member also in a second one, half the groups further on, so an account is
referenced by two groups and must still be created once.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from writeback.testbed.sandbox.people import generated_people

SECOND_GROUP_EVERY = 5  # every 5th member is also in a second group
COMPANY = "Contoso Bench"


@dataclass(frozen=True)
class UsersSize:
    """One size of ``scripts/bench users``: ``members`` cloud-only users spread over ``groups`` groups."""

    name: str
    members: int
    groups: int


USERS_SIZES: dict[str, UsersSize] = {
    "small": UsersSize("small", members=50, groups=5),
    "medium": UsersSize("medium", members=20_000, groups=2_000),
    "large": UsersSize("large", members=100_000, groups=10_000),
}


@dataclass
class UsersTenant:
    """The tenant document for the emulator, and each group's expected member ids."""

    document: dict[str, Any]
    member_ids: list[str]  # the cloud-only users, in order
    members: dict[str, list[str]] = field(default_factory=dict)  # group id -> member user ids

    @property
    def group_ids(self) -> list[str]:
        return [g["id"] for g in self.document["groups"]]

    @property
    def memberships(self) -> int:
        return sum(len(m) for m in self.members.values())


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def group_of(i: int, groups: int) -> list[int]:
    """The groups (by index) member ``i`` belongs to: its own, and for every SECOND_GROUP_EVERY-th member a
    second one half the groups further on (none when there is one group)."""
    home = i % groups
    if i % SECOND_GROUP_EVERY == 0 and groups > 1:
        return [home, (home + groups // 2) % groups]
    return [home]


def generate_users_tenant(
    size: UsersSize, *, tenant_id: str, client_id: str, client_secret: str, seed: int = 20261207
) -> UsersTenant:
    """``size.members`` cloud-only users in ``size.groups`` assigned security groups."""
    if size.groups < 1 or size.members < size.groups:
        raise ValueError(f"{size.name}: needs at least one group and one member per group")
    rng = random.Random(f"{seed}-users-{size.name}")
    users: list[dict[str, Any]] = []
    for i, p in enumerate(generated_people(size.members, seed=seed)):
        # A UPN prefix of 15 characters at most for most users, so most keep Cloud Sync's sAMAccountName;
        # the same first names and surnames recur, so the number keeps them apart.
        prefix = f"{p.given_name[:1]}{p.surname}{i}".lower().replace(" ", "").replace("'", "")
        users.append(
            {
                "id": _uuid(rng),
                "displayName": f"{p.given_name} {p.surname}",
                "givenName": p.given_name,
                "surname": p.surname,
                "userPrincipalName": f"{prefix}@bench.onmicrosoft.com",
                "mail": f"{prefix}@bench.onmicrosoft.com",
                "accountEnabled": True,
                "userType": "Member",
                "department": p.department,
                "jobTitle": p.title,
                "companyName": COMPANY,
                "city": p.city,
                "country": "Netherlands",
                "employeeId": f"C{i:07d}",
            }
        )
    group_ids = [_uuid(rng) for _ in range(size.groups)]
    members: dict[str, list[str]] = {g: [] for g in group_ids}
    for i, user in enumerate(users):
        for g in group_of(i, size.groups):
            members[group_ids[g]].append(user["id"])
    groups = [
        {
            "id": gid,
            "displayName": f"Bench Cloud Members {n:05d}",
            "description": f"writeback users benchmark group {n:05d}",
            "mailNickname": f"benchcloudmembers{n:05d}",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": list(members[gid]),
        }
        for n, gid in enumerate(group_ids)
    ]
    document = {
        "tenant_id": tenant_id,
        "apps": [{"client_id": client_id, "client_secret": client_secret}],
        "users": users,
        "groups": groups,
    }
    return UsersTenant(document, [u["id"] for u in users], members)
