"""How fast the machine is right now: the same small CPU and LDAP work, timed before each measurement it
is compared with.

On a shared VM the host's speed moves between runs and within one (the same medium first apply took 56 s
in one run and 89 s in another, every phase alike). Engine and limit are measured minutes apart, so the
report shows this check before each: when the two differ, so did the machine, and the ratio carries it.
"""

from __future__ import annotations

import time
from typing import Any

import ldap

from benchmarks.bench.ldaptools import connection
from writeback.testbed.sandbox import SandboxInfo

CPU_LOOP = 1_000_000
LDAP_SEARCHES = 200
REPEATS = 3


def _cpu_once() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(CPU_LOOP):
        total += i * i % 7
    return time.perf_counter() - started


def _ldap_once(conn: Any) -> float:
    started = time.perf_counter()
    for _ in range(LDAP_SEARCHES):
        conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["defaultNamingContext"])
    return time.perf_counter() - started


def host_check(info: SandboxInfo) -> dict[str, float]:
    """Best of three: a fixed Python loop, and rootDSE searches answered by the DC (milliseconds)."""
    with connection(info) as conn:
        ldap_ms = min(_ldap_once(conn) for _ in range(REPEATS)) * 1000
    cpu_ms = min(_cpu_once() for _ in range(REPEATS)) * 1000
    return {"cpu_ms": round(cpu_ms, 1), "ldap_ms": round(ldap_ms, 1)}
