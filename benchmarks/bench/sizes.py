"""The three tenant sizes of ``scripts/bench``: what each generates and how much each scenario does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """One benchmark size.

    ``memberships`` is the target for direct memberships (static + dynamic + nested); the generator gets
    within a fraction of a percent of it and the report gives the exact figure.
    """

    name: str
    users: int  # synced users (AD accounts mirrored in the cloud)
    groups: int  # cloud security groups, all in scope
    memberships: int
    big_group: int  # members of the biggest group (users), 0 = no big group
    nested: int  # groups nested into another group
    dynamic: int  # dynamic-membership groups
    cloud_only: int  # cloud-only users, members of some groups (reported as skipped, never written)
    sandbox_users: int  # users seeded in the sandbox DC (snapshot cached when >= 2,000)
    changes: tuple[int, ...] = (1, 100, 10_000)
    latency_samples: int = 20
    rule_users: int = 100_000
    max_members: int = 50_000  # members.max_members for the run (Microsoft's limit is 50,000)


SIZES: dict[str, Size] = {
    "small": Size(
        "small",
        users=300,
        groups=40,
        memberships=3_000,
        big_group=300,
        nested=4,
        dynamic=2,
        cloud_only=10,
        sandbox_users=300,
        changes=(1, 100, 1_000),
    ),
    "medium": Size(
        "medium",
        users=20_000,
        groups=2_000,
        memberships=200_000,
        big_group=20_000,
        nested=40,
        dynamic=4,
        cloud_only=50,
        sandbox_users=20_000,
    ),
    "large": Size(
        "large",
        users=100_000,
        groups=10_000,
        memberships=1_000_000,
        big_group=100_000,
        nested=200,
        dynamic=8,
        cloud_only=200,
        sandbox_users=100_000,
        # The big group has 100,000+ members: above Microsoft's 50,000, so the run raises the limit.
        max_members=200_000,
    ),
}
