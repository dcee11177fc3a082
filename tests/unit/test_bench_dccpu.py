"""benchmarks.bench.dccpu: the CPU a process tree (the sandbox's Samba) used, reaped children included."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from benchmarks.bench.dccpu import dc_cpu_seconds, used_since

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Burns ``n`` CPU seconds (its own process time, whatever the machine's load), prints a line, then waits.
BURN = (
    "import sys,time\nwhile time.process_time() < {n}: pass\nprint('burnt', flush=True)\nsys.stdin.read()\n"
)
# Runs a child that burns 0.3 s and ends (reaped by wait), then burns 0.2 s itself, then waits.
TREE = (
    "import subprocess,sys,time\n"
    "subprocess.run([sys.executable, '-c', 'import time\\nwhile time.process_time() < 0.3: pass'], check=True)\n"
    + BURN.format(n=0.2)
)


def _started(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "burnt\n"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.communicate("", timeout=30)


def test_a_process_and_the_children_it_reaped_are_counted() -> None:
    proc = _started(TREE)
    try:
        seconds = dc_cpu_seconds(proc.pid)
        assert seconds is not None and 0.45 <= seconds < 5, "0.2 s of its own and 0.3 s of its reaped child"
    finally:
        _stop(proc)


def test_used_since_is_the_difference_and_unknown_without_a_process() -> None:
    proc = _started(BURN.format(n=0.1))
    try:
        before = dc_cpu_seconds(proc.pid)
        time.sleep(0.2)  # waiting on stdin: no CPU
        assert before is not None
        since = used_since(proc.pid, before)
        assert since is not None and 0 <= since < 0.05
        assert used_since(proc.pid, None) is None
    finally:
        _stop(proc)
    assert dc_cpu_seconds(proc.pid) is None, "the process is gone"
    assert dc_cpu_seconds(None) is None
