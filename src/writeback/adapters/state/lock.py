"""One writer per state: `writeback run`, `apply` and `state rebuild-replica` hold an exclusive lock.

The lock is ``flock(2)`` on ``<state path>.lock``, taken without waiting: a second writer fails at once with
:class:`~writeback.errors.StateLockedError` naming the process that holds it (its pid and command, which the
holder writes into the lock file). The kernel drops the lock when the holder exits, however it exits, so a
crash never leaves a stale lock behind. Readers (`plan`, `log`, `show`) do not take it: SQLite's WAL mode lets
them read while a writer writes.

Written by hand rather than with the ``filelock`` package because the refusal must name the holder, which
needs the holder's details in the locked file itself; the whole mechanism is the one ``fcntl.flock`` call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from writeback.adapters.state.files import FILE_MODE, private_dir
from writeback.errors import StateError, StateLockedError


def lock_path(state_path: str | Path) -> Path:
    return Path(f"{state_path}.lock")


def read_holder(path: str | Path) -> dict[str, Any]:
    """What the holder wrote into the lock file ({} when unreadable or not yet written)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class WriterLock:
    """The exclusive writer lock of one state store. Use as a context manager; :meth:`acquire` never waits."""

    def __init__(self, state_path: str | Path, command: str) -> None:
        self.state_path = str(state_path)
        self.path = lock_path(state_path)
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        if self.state_path == ":memory:":
            return self
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StateError(
                f"cannot create the lock file {self.path}: {exc.strerror}; check the permissions of the "
                "state.path folder"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refusal() from None
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from exc
        os.fchmod(fd, FILE_MODE)
        holder = {"pid": os.getpid(), "command": self.command, "since": time.time(), "argv": sys.argv[:1]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def _refusal(self) -> StateLockedError:
        holder = read_holder(self.path)
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        who = f"process {pid}" if pid else "another process"
        if holder.get("command"):
            who += f" (writeback {holder['command']})"
        return StateLockedError(
            f"the state store {self.state_path} is in use by {who}: only one writer (`writeback run`, "
            f"`apply`, `state rebuild-replica`) may use it at a time. Wait for it to finish, or stop it "
            f"(for the service: systemctl stop writeback); `plan`, `log` and `show` work meanwhile. "
            f"Lock file: {self.path}",
            pid=pid,
        )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
