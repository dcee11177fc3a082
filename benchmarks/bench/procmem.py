"""A process's memory from /proc (proc(5): /proc/<pid>/status, values in kB), imported by the engine's child
processes, so it imports nothing heavy.

Peak figures are VmHWM, the high-water mark of the process's own address space since its exec. getrusage's
ru_maxrss is not used: Linux carries it across fork and execve, so a child's figure starts at the size of the
benchmark process that spawned it (which holds the emulator's tenant: 424 MB reported at medium, where the
engine's own VmHWM is 169 MB)."""

from __future__ import annotations


def read_memory(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0]) / 1024
    if set(found) != {"VmRSS", "VmHWM"}:
        raise RuntimeError(f"/proc/{pid}/status has no VmRSS/VmHWM: is {pid} a live user process?")
    return found


def peak_rss_mb() -> float:
    """This process's peak resident size (VmHWM) in MB."""
    return read_memory()["VmHWM"]
