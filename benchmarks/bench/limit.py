"""The directory's own limit: the same groups written by the fewest LDAP operations a client can use.

One add per group carrying its attributes and its first 5,000 members, one modify per further 5,000 (the
chunk size writeback uses), child groups before their parents so nested references resolve at once. One
connection, one operation at a time, like the engine. Whatever the engine costs beyond this is its own
overhead: reading Graph, planning, journaling, reading AD back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import ldap

from benchmarks.bench.dccpu import dc_cpu_seconds, used_since
from benchmarks.bench.ldaptools import GroupEntry, connection
from writeback.core.dn import is_within, normalize_dn, split_dn
from writeback.testbed.sandbox import SandboxInfo

CHUNK = 5_000
LIMIT_ANCHOR_PREFIX = b"Limit_"  # same length as "Group_": the copies must not look managed to any engine


@dataclass
class LimitResult:
    seconds: float
    operations: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    values: int = 0
    dc_cpu_s: float | None = None  # the DC's CPU seconds over the timed writes (benchmarks.bench.dccpu)


def _relocate(dn: str, source_base: str, target_base: str) -> str:
    """``dn`` below ``source_base`` moved under ``target_base`` (its own RDNs kept, whatever their case)."""
    own = split_dn(dn)[: len(split_dn(dn)) - len(split_dn(source_base))]
    return ",".join([*own, target_base])


def _children_first(groups: Sequence[GroupEntry], source_base: str) -> list[GroupEntry]:
    """Post-order over nesting, so every nested group exists before the add that references it."""
    by_dn = {normalize_dn(g.dn): g for g in groups}
    done: set[str] = set()
    ordered: list[GroupEntry] = []
    for root in groups:
        stack: list[tuple[GroupEntry, bool]] = [(root, False)]
        while stack:
            group, expanded = stack.pop()
            key = normalize_dn(group.dn)
            if key in done:
                continue
            if expanded:
                done.add(key)
                ordered.append(group)
                continue
            stack.append((group, True))
            for member in group.members:
                child = by_dn.get(normalize_dn(member))
                if child is not None and normalize_dn(child.dn) not in done:
                    stack.append((child, False))
    return ordered


def _copy_attributes(group: GroupEntry) -> list[tuple[str, list[bytes]]]:
    modlist: list[tuple[str, list[bytes]]] = [("objectClass", [b"top", b"group"])]
    for name, values in group.attributes.items():
        if name == "sAMAccountName":
            values = [b"L" + values[0][1:]]  # unique in the domain, same length
        elif name in ("msDS-ExternalDirectoryObjectId", "adminDescription"):
            values = [LIMIT_ANCHOR_PREFIX + v.split(b"_", 1)[-1] for v in values]
        modlist.append((name, values))
    return modlist


def write_limit(
    info: SandboxInfo, groups: Sequence[GroupEntry], source_base: str, target_base: str
) -> LimitResult:
    """Write copies of ``groups`` (read from ``source_base``) under ``target_base`` and time it.

    Only the writes are timed: the connection is opened and bound before the clock starts.
    """
    ordered = _children_first(groups, source_base)
    ops = {"add": 0, "modify": 0}
    values = 0
    with connection(info) as conn:
        dc_before = dc_cpu_seconds(info.samba_pid)
        started = time.perf_counter()
        for group in ordered:
            members = [
                (_relocate(m, source_base, target_base) if is_within(m, source_base) else m).encode()
                for m in group.members
            ]
            modlist = _copy_attributes(group)
            if members:
                modlist.append(("member", members[:CHUNK]))
            dn = _relocate(group.dn, source_base, target_base)
            conn.add_ext_s(dn, modlist)
            ops["add"] += 1
            for start in range(CHUNK, len(members), CHUNK):
                conn.modify_ext_s(dn, [(ldap.MOD_ADD, "member", members[start : start + CHUNK])])
                ops["modify"] += 1
            values += len(members)
        seconds = time.perf_counter() - started
        dc_cpu = used_since(info.samba_pid, dc_before)
    return LimitResult(seconds=seconds, operations=ops, groups=len(ordered), values=values, dc_cpu_s=dc_cpu)
