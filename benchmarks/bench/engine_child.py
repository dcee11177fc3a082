"""``python -m benchmarks.bench.engine_child CONFIG``: one ``writeback apply`` in its own process, measured.

It runs what ``writeback apply`` runs (build_engine, sync, plan, apply) and prints one JSON object: the time
of each phase, the engine's LDAP operations by kind (LdapDirectory.stats), its Graph requests
(GraphClient.stats), and the process's own CPU time and peak RSS (getrusage of this process, whose life is
exactly one apply). The emulator runs in another process, so none of its work is counted here.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from writeback.config import load_settings
from writeback.wiring import build_engine


def main(argv: list[str]) -> int:
    settings = load_settings(Path(argv[0]))
    engine = build_engine(settings)
    phases: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        report = engine.sync()
        t1 = time.perf_counter()
        plan = engine.plan()
        t2 = time.perf_counter()
        result = engine.apply(plan)
        t3 = time.perf_counter()
    finally:
        engine.directory.close()
    phases = {"sync": t1 - t0, "plan": t2 - t1, "apply": t3 - t2}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client = getattr(engine.source, "client", None)
    out = {
        "phases": phases,
        "ldap": engine.directory.stats,
        "graph": dict(client.stats) if client is not None else {},
        "graph_requests_sync": report.requests,
        "full_resync": report.full_resync,
        "plan_counts": plan.counts(),
        "member_values": plan.member_value_counts(),
        "applied": sum(1 for r in result.results if r.ok),
        "failed": [f"{r.change.kind.value} {r.change.dn}: {r.error}" for r in result.failed][:20],
        "aborted": result.aborted,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
    }
    print(json.dumps(out))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
