"""``python -m benchmarks.bench.engine_child CONFIG``: one ``writeback apply`` in its own process, measured.

It runs what ``writeback apply`` runs (the writer claim, then one :class:`writeback.app.reconcile_pass.ReconcilePass`:
sync, plan, apply) and prints one JSON object: the time of each phase, ``Engine.timings`` (Graph read, AD read,
planning, AD write), the engine's LDAP operations by kind (LdapDirectory.stats), its Graph requests
(GraphClient.stats), and the process's own CPU time and peak RSS (getrusage of this process, whose life is
exactly one apply). The emulator runs in another process, so none of its work is counted here.
With ``WRITEBACK_BENCH_PROFILE=FILE`` in the environment it also writes a cProfile of the three phases. With
``WRITEBACK_BENCH_DC_PID=PID`` (the sandbox's Samba) it also reports ``dc_cpu_write_s``: the DC's CPU seconds from
the first change written to the end of the apply (:mod:`benchmarks.bench.dccpu`).
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

from benchmarks.bench.dccpu import dc_cpu_seconds, used_since
from benchmarks.bench.procmem import peak_rss_mb
from writeback.app.engine import Engine
from writeback.app.reconcile_pass import PassOptions, ReconcilePass
from writeback.app.wiring import build_directory, build_graph, build_store, writer_claim
from writeback.config import load_settings

PROFILE_ENV = "WRITEBACK_BENCH_PROFILE"  # a path: write a cProfile of sync + plan + apply there
DC_PID_ENV = "WRITEBACK_BENCH_DC_PID"  # the Samba DC's pid: measure its CPU over the write phase


class _DcClock:
    """The DC's CPU seconds when the first change is about to be written (the pass's should_stop hook, asked
    before each change; it never stops the pass)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.at_first_write: float | None = None

    def __call__(self) -> bool:
        if self.at_first_write is None:
            self.at_first_write = dc_cpu_seconds(self.pid)
        return False


class _GcClock:
    """Seconds spent in the cyclic garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started


def main(argv: list[str]) -> int:
    gc_clock = _GcClock()
    settings = load_settings(Path(argv[0]))
    # What wiring.build_engine does, keeping the typed adapters for their statistics.
    client, source = build_graph(settings)
    directory = build_directory(settings)
    engine = Engine(settings, source, directory, build_store(settings))
    dc_clock = _DcClock(int(os.environ[DC_PID_ENV]) if os.environ.get(DC_PID_ENV) else None)
    profiler = cProfile.Profile() if os.environ.get(PROFILE_ENV) else None
    if profiler is not None:
        profiler.enable()
    try:
        with writer_claim(settings, "apply") as fence:
            passes = ReconcilePass(engine, fence=fence, should_stop=dc_clock)
            run = passes.run(PassOptions("full", deep="--deep" in argv[1:]))
        dc_cpu_write = used_since(dc_clock.pid, dc_clock.at_first_write)
    finally:
        engine.close()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ[PROFILE_ENV])
    plan, result, report = run.plan, run.applied, run.sync
    assert result is not None  # a pass that is not a dry run applies
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "phases": run.phases,
        "deep": run.plan.deep,
        "timings": engine.timings,
        "ldap": directory.stats,
        "graph": client.stats,
        "graph_requests_sync": report.requests,
        "full_resync": report.full_resync,
        "plan_counts": plan.counts(),
        "member_values": plan.member_value_counts(),
        "applied": sum(1 for r in result.results if r.ok),
        "failed": [f"{r.change.kind.value} {r.change.dn}: {r.error}" for r in result.failed][:20],
        "aborted": result.aborted,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": peak_rss_mb(),  # VmHWM: this process's own peak (see benchmarks.bench.procmem)
        "gc_seconds": [round(x, 3) for x in gc_clock.seconds],  # in the cyclic GC, generations 0, 1, 2
        "dc_cpu_write_s": dc_cpu_write,  # the DC's CPU over the write phase (None: not measured, no writes)
    }
    print(json.dumps(out))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
