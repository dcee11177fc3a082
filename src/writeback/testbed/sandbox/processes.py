"""Detached background processes (Samba, the Graph emulator): start, find, stop, wait for a port.

The sandbox outlives the command that started it, so each process runs in its own session with its output in
a log file, and its pid is kept in a file together with the process's start time (from /proc). A pid is only
trusted while /proc shows a live, non-zombie process with that same start time, so a recycled pid is never
mistaken for our server. (Command lines are no use for this: Samba rewrites its own process title.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from writeback.errors import SandboxError


def start_detached(argv: Sequence[str], *, log_file: Path, pid_file: Path, cwd: Path | None = None) -> int:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_file``; record and return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    # The Popen object is dropped on purpose: the process must outlive this call (and this Python process).
    # If it dies while we still run, _reap() collects it so it does not linger as a zombie.
    started = _start_time(proc.pid)
    pid_file.write_text(f"{proc.pid} {started}\n", encoding="ascii")
    return proc.pid


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else "?"  # field 22 of stat: start time in ticks


def is_alive(pid: int, start_time: str) -> bool:
    """True when ``pid`` is a running, non-zombie process that started at ``start_time``."""
    _reap(pid)
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19:
        return False
    return fields[0] not in ("Z", "X") and fields[19] == start_time


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that very process is still alive, else None."""
    try:
        pid_text, start_time = pid_file.read_text(encoding="ascii").split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if is_alive(pid, start_time) else None


def stop(pid_file: Path, *, timeout: float = 15.0) -> bool:
    """SIGTERM the process group recorded in ``pid_file``, SIGKILL it after ``timeout``. True if one ran."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    start_time = _start_time(pid)
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid, start_time):
            break
        time.sleep(0.1)
    else:
        _signal_group(pid, signal.SIGKILL)
        for _ in range(50):
            if not is_alive(pid, start_time):
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Started with start_new_session, so the pid is also its process group: this reaches Samba's children too.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, for error messages ('' when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_listening(port: int, *, pid_file: Path, log_file: Path, what: str, timeout: float) -> None:
    """Wait for ``port`` to accept connections while the process is alive; SandboxError with its log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if read_pid(pid_file) is None:
            raise SandboxError(
                f"{what} exited during startup; last lines of {log_file}:\n{log_tail(log_file)}"
            )
        time.sleep(0.2)
    raise SandboxError(
        f"{what} did not listen on port {port} within {timeout:.0f} s; last lines of {log_file}:\n"
        f"{log_tail(log_file)}"
    )
