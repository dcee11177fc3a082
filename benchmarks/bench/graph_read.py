"""The Graph side of a full resync, measured on its own: a full delta read into a fresh, empty replica.

``python -m benchmarks.bench.graph_read CONFIG STATE`` is the child: it builds the Graph source exactly as
``writeback`` does (``wiring.build_graph``), opens a new SQLite replica at STATE (which must not exist yet),
runs ``GraphSource.sync`` once and prints one JSON object: wall time, Graph requests, whether it was a full
resync, and its own CPU time and peak RSS. No LDAP connection is opened, so the figure is Graph reading and
replica writing only: the part of a full resync that does not depend on the directory. The emulator answers
from a thread of the benchmark process, as it does for the engine's applies.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.bench.procmem import peak_rss_mb
from benchmarks.bench.workspace import ROOT, Workspace, child_env
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.wiring import build_graph
from writeback.config import load_settings


def measure(workspace: Workspace, timeout: float = 3600.0) -> dict[str, Any]:
    """Run the child against ``workspace``'s config with a fresh replica; returns its figures."""
    state = workspace.dir / "graph-read.sqlite"
    for leftover in workspace.dir.glob("graph-read.sqlite*"):
        leftover.unlink()
    argv = [sys.executable, "-m", "benchmarks.bench.graph_read", str(workspace.config), str(state)]
    started = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - started
    for leftover in workspace.dir.glob("graph-read.sqlite*"):
        leftover.unlink()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the Graph full read failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return {
        "wall_s": round(wall, 3),
        "sync_s": round(report["sync_seconds"], 3),
        "requests": report["requests"],
        "full_resync": report["full_resync"],
        "cpu_s": round(report["cpu_seconds"], 3),
        "max_rss_mb": round(report["max_rss_mb"], 1),
    }


def main(argv: list[str]) -> int:
    settings = load_settings(Path(argv[0]))
    state = Path(argv[1])
    if state.exists():
        print(f"error: {state} exists; the full read needs a fresh replica", file=sys.stderr)
        return 2
    _client, source = build_graph(settings)
    store = SqliteStore(state)
    try:
        started = time.perf_counter()
        report = source.sync(store)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "sync_seconds": seconds,
        "requests": report.requests,
        "full_resync": report.full_resync,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": peak_rss_mb(),  # VmHWM: this process's own peak (see benchmarks.bench.procmem)
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
