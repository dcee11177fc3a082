"""One writer per state: the lock refuses a second writer at once, naming the process that holds it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from writeback.adapters.state.files import write_private
from writeback.adapters.state.lock import WriterLock, lock_path
from writeback.errors import StateLockedError

HOLDER = """
import sys, time
from writeback.adapters.state.lock import WriterLock
with WriterLock(sys.argv[1], "run"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            WriterLock(state, "apply").acquire()
        assert time.monotonic() - started < 2  # refused at once, no waiting
        assert info.value.pid == holder.pid
        message = str(info.value)
        assert f"in use by process {holder.pid} (writeback run)" in message
        assert "`plan`, `log` and `show` work meanwhile" in message
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with the process: no stale lock after a crash (kill -9).
    with WriterLock(state, "apply") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert lock_path(state).read_text() == ""  # released: holder details cleared


def test_the_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    with WriterLock(tmp_path / "s.sqlite", "run"), pytest.raises(StateLockedError, match=str(os.getpid())):
        WriterLock(tmp_path / "s.sqlite", "apply").acquire()
    WriterLock(tmp_path / "s.sqlite", "apply").acquire().release()


def test_lock_file_and_new_folders_are_private(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state.sqlite"
    with WriterLock(state, "run"):
        assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600
        assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700


def test_write_private_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "plans" / "plan.json"
    write_private(target, "one")
    target.chmod(0o644)
    write_private(target, "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["plan.json"]  # no temporary file left behind
