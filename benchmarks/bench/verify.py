"""Correctness checks: AD holds exactly the members the cloud says it should.

Expected counts come from the emulator's live state (the cloud's truth, dynamic groups included): per
group, its synced users plus its nested in-scope groups. Cloud-only users are not written, by design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmarks.bench.ldaptools import GroupEntry
from benchmarks.bench.tenantgen import GeneratedTenant
from writeback.testbed.emulator.testing import EmulatorHandle


def expected_counts(handle: EmulatorHandle, gen: GeneratedTenant) -> dict[str, int]:
    """Cloud group id -> the number of member values its AD twin must hold."""
    synced = set(gen.synced_ids)
    groups = set(gen.group_ids)
    tenant = handle.tenant
    with tenant.lock:
        return {
            gid: sum(1 for m in tenant.visible_members(gid) if m in synced or m in groups)
            for gid in gen.group_ids
        }


def compare(
    expected: Mapping[str, int], found: Sequence[GroupEntry], anchor_prefix: str = "Group_"
) -> list[str]:
    """Differences between the expected member counts and the groups read from AD (empty when equal)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for group in found:
        anchor = group.anchor or ""
        if not anchor.startswith(anchor_prefix):
            problems.append(f"{group.dn}: unexpected anchor {anchor!r}")
            continue
        seen[anchor[len(anchor_prefix) :]] = len(group.members)
    for gid, count in expected.items():
        if gid not in seen:
            problems.append(f"group {gid} missing in AD")
        elif seen[gid] != count:
            problems.append(f"group {gid}: {seen[gid]} members in AD, expected {count}")
    problems += [f"group {gid} in AD but not expected" for gid in seen.keys() - expected.keys()]
    return problems
