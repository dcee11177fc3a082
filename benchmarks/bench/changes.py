"""Membership changes made in the cloud, the way an administrator makes them.

Up to 100 changes go through Graph itself (``POST /groups/{id}/members/$ref``, ``DELETE …/$ref``); bigger
batches use the emulator's admin API (``/_emulator/members``), which skips the per-request round trip and
leaves the same trace for delta queries. Changes touch assigned groups only (dynamic groups follow their
rule) and only synced users, so each one maps to exactly one member value in AD.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.bench.tenantgen import GeneratedTenant
from writeback.testbed.emulator.testing import EmulatorHandle

PER_GROUP = 10  # changes per touched group (half adds, half removes) when there are enough groups
GRAPH_LIMIT = 100  # batches up to this size go through Graph, bigger ones through the admin API
LDAP_CHUNK = 5_000


@dataclass(frozen=True)
class GroupEdit:
    group: str
    add: tuple[str, ...]
    remove: tuple[str, ...]


def pick_edits(gen: GeneratedTenant, count: int, rng: random.Random) -> list[GroupEdit]:
    """``count`` membership changes over assigned groups: one add when ``count`` is 1, else ~10 per group."""
    synced = set(gen.synced_ids)
    candidates = [g for g in gen.static_ids if sum(1 for m in gen.members[g] if m in synced) >= 2]
    rng.shuffle(candidates)
    if not candidates:
        raise RuntimeError("no assigned group with synced members to change")
    groups = min(len(candidates), max(1, math.ceil(count / PER_GROUP)))
    edits: list[GroupEdit] = []
    left = count
    for n, gid in enumerate(candidates[:groups]):
        k = math.ceil(left / (groups - n))
        left -= k
        present = [m for m in gen.members[gid] if m in synced]
        removes = min(k // 2, len(present) - 1)
        current = set(gen.members[gid])
        adds: list[str] = []
        while len(adds) < k - removes:
            uid = gen.synced_ids[rng.randrange(len(gen.synced_ids))]
            if uid not in current:
                current.add(uid)
                adds.append(uid)
        edits.append(GroupEdit(gid, tuple(adds), tuple(rng.sample(present, removes))))
    return edits


def minimal_modifies(edits: Sequence[GroupEdit]) -> int:
    """The fewest LDAP modifies that carry ``edits``: per group one per 5,000 adds and one per 5,000 removes."""
    return sum(math.ceil(len(e.add) / LDAP_CHUNK) + math.ceil(len(e.remove) / LDAP_CHUNK) for e in edits)


def make_changes(handle: EmulatorHandle, gen: GeneratedTenant, edits: Sequence[GroupEdit]) -> str:
    """Apply ``edits`` in the emulator (and to ``gen.members``); returns how: 'graph' or 'admin API'."""
    via_graph = sum(len(e.add) + len(e.remove) for e in edits) <= GRAPH_LIMIT
    for edit in edits:
        if via_graph:
            for uid in edit.add:
                add_via_graph(handle, edit.group, uid)
            for uid in edit.remove:
                response = handle.graph("DELETE", f"groups/{edit.group}/members/{uid}/$ref")
                response.raise_for_status()
        else:
            handle.admin("members", {"group": edit.group, "add": list(edit.add), "remove": list(edit.remove)})
        removed = set(edit.remove)
        gen.members[edit.group] = [m for m in gen.members[edit.group] if m not in removed] + list(edit.add)
    return "graph" if via_graph else "admin API"


def add_via_graph(handle: EmulatorHandle, group: str, member: str) -> None:
    body = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member}"}
    handle.graph("POST", f"groups/{group}/members/$ref", json=body).raise_for_status()
