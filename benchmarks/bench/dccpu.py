"""CPU time the sandbox's Samba DC has used: how much of a core the DC had during a phase.

The wall time of an LDAP write is mostly the DC's own work, and on a shared machine the DC gets a varying share
of a core: the same 2,007 writes took the limit 29 s in one run and 52 s in another (7 December). The DC's CPU
seconds over a phase, set against the phase's wall time, say whether the DC waited for a CPU (a low share: the
machine's load) or had more to do (more CPU seconds). They too grow somewhat under load (26-38 s for the same
writes), so the share of a core is the first thing to compare.

Linux only (``/proc``): the Samba root process, every descendant alive, and the children they have reaped
(``cutime``/``cstime``), so the work of a forked worker that ended meanwhile is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, utime + stime + cutime + cstime in clock ticks) of ``pid``; None when it is gone."""
    try:
        text = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ... (proc(5))
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def dc_cpu_seconds(root_pid: int | None) -> float | None:
    """CPU seconds used so far by the process tree of ``root_pid`` (the Samba DC); None when unknown."""
    if root_pid is None or not (PROC / str(root_pid)).is_dir():
        return None
    ticks: dict[int, tuple[int, int]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (stat := _stat(entry)) is not None:
            ticks[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _t) in ticks.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in ticks:
            total += ticks[pid][1]
            todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


def used_since(root_pid: int | None, before: float | None) -> float | None:
    """CPU seconds the DC used since it had used ``before``, rounded; None when either is unknown."""
    now = dc_cpu_seconds(root_pid)
    return None if now is None or before is None else round(now - before, 2)
