"""Latency of ``writeback run``: from a member added through Graph to the member being visible in AD.

The service runs as users run it (the CLI, default poll interval). Each sample adds one synced user to one
assigned group through Graph, then polls the AD group every 20 ms until the user's DN is a member. Samples
start at a random point of the poll cycle, so their spread shows the poll interval, not a lucky phase.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap
from ldap.filter import escape_filter_chars

from benchmarks.bench.changes import add_via_graph
from benchmarks.bench.ldaptools import connection
from benchmarks.bench.tenantgen import GeneratedTenant
from benchmarks.bench.workspace import (
    Workspace,
    start_service,
    stop_service,
    wait_for_first_cycle,
)
from writeback.testbed.emulator.testing import EmulatorHandle
from writeback.testbed.sandbox import SandboxInfo

POLL_AD = 0.02
SAMPLE_TIMEOUT = 120.0
DEFAULT_POLL_INTERVAL = 2.0  # writeback's service.poll_interval default, for the random start offset


@dataclass(frozen=True)
class LatencyResult:
    samples: list[float]
    startup_seconds: float

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100) of the samples."""
        ordered = sorted(self.samples)
        rank = min(max(1, math.ceil(p / 100 * len(ordered))), len(ordered))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": [round(s, 3) for s in self.samples],
            "p50": round(statistics.median(self.samples), 3),
            "p95": round(self.percentile(95), 3),
            "max": round(max(self.samples), 3),
            "service_first_cycle_seconds": round(self.startup_seconds, 2),
        }


def _member_present(conn: Any, group_dn: str, user_dn: str) -> bool:
    flt = f"(member={escape_filter_chars(user_dn)})"
    return bool(conn.search_s(group_dn, ldap.SCOPE_BASE, flt, ["1.1"]))


def measure(
    info: SandboxInfo,
    handle: EmulatorHandle,
    gen: GeneratedTenant,
    workspace: Workspace,
    group_dns: Mapping[str, str],
    samples: int,
    rng: random.Random,
) -> LatencyResult:
    """Start ``writeback run``, take ``samples`` samples, stop it. ``group_dns``: cloud id -> AD DN."""
    started = time.perf_counter()
    proc = start_service(workspace, workspace.dir / "service.log")
    try:
        wait_for_first_cycle(workspace, proc, timeout=3600)
        startup = time.perf_counter() - started
        results: list[float] = []
        with connection(info) as conn:
            for _ in range(samples):
                time.sleep(rng.uniform(0, DEFAULT_POLL_INTERVAL))
                gid = rng.choice(gen.static_ids)
                current = set(gen.members[gid])
                uid = rng.choice(gen.synced_ids)
                while uid in current:
                    uid = rng.choice(gen.synced_ids)
                t0 = time.perf_counter()
                add_via_graph(handle, gid, uid)
                gen.members[gid].append(uid)
                while not _member_present(conn, group_dns[gid], gen.user_dn[uid]):
                    if proc.poll() is not None:
                        raise RuntimeError(f"`writeback run` exited with {proc.returncode}")
                    if time.perf_counter() - t0 > SAMPLE_TIMEOUT:
                        raise RuntimeError(
                            f"a member added in the cloud did not reach AD in {SAMPLE_TIMEOUT} s"
                        )
                    time.sleep(POLL_AD)
                results.append(time.perf_counter() - t0)
    finally:
        stop_service(proc)
    return LatencyResult(results, startup)


def service_log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
