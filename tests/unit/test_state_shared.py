"""One SQLite state shared by several processes: the service keeps its store open while the console opens
and closes stores in the same process and the CLI opens and closes the state from other processes.

SQLite's locks are POSIX advisory locks, which belong to the process, not to the descriptor: closing *any*
descriptor of the database file drops every lock the process holds on it. A process that opened the state
file by a descriptor of its own (to chmod it, say) and closed it silently unlocked the service's connection;
the next CLI process to close the database then found no other user, checkpointed and unlinked the WAL, and
the service went on writing into a deleted file (its rows lost, "disk I/O error" in the console).
https://www.sqlite.org/howtocorrupt.html section 2.2, https://www.sqlite.org/lockingv3.html section 6.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from writeback.adapters.state.sqlite import SqliteStore

# What `writeback log`, `plan` or `allow` does to the state, in a process of its own: open, write, close.
_OTHER_PROCESS = """
import sys
from writeback.adapters.state.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
store.log("cli", "allow", "info", group_name=sys.argv[2])
store.close()
"""

# A later process (a restart) reading the log back.
_READ_LOG = """
import sys
from writeback.adapters.state.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
print("\\n".join(e.group_name or "" for e in store.read_log(limit=1000)))
store.close()
"""


def _in_other_process(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _deleted_state_files(path: Path) -> list[str]:
    """The files of the state this process still has open although they were unlinked."""
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:  # the descriptor listing the folder itself, closed meanwhile
            continue
    return [link for link in links if link.startswith(str(path)) and link.endswith("(deleted)")]


def test_a_store_opened_and_closed_beside_the_service_store_keeps_its_locks(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    service = SqliteStore(path)  # `writeback run`: one store for its lifetime
    service.log("run", "create", "success", group_name="before")
    wal = Path(f"{path}-wal")
    wal_inode = wal.stat().st_ino

    console = SqliteStore(path)  # a console request: a store of its own, in the service's process
    console.read_log(limit=1)
    console.close()

    _in_other_process(_OTHER_PROCESS, str(path), "from the cli")  # `writeback allow`, then it exits

    assert not _deleted_state_files(path), "the service writes into unlinked state files"
    assert wal.exists() and wal.stat().st_ino == wal_inode, "another process removed the service's WAL"
    service.log("run", "update", "success", group_name="after")  # still writes where others read
    assert _in_other_process(_READ_LOG, str(path)).split("\n")[:3] == ["before", "from the cli", "after"]
    service.close()


def test_a_new_state_file_is_created_private_and_usable_by_several_stores(tmp_path: Path) -> None:
    """The file writeback creates is 0600 from its first byte; a second store on it changes nothing."""
    path = tmp_path / "new" / "state.sqlite"
    first = SqliteStore(path)
    assert path.stat().st_mode & 0o777 == 0o600
    second = SqliteStore(path)
    second.log("run", "create", "success", group_name="g")
    second.close()
    assert [e.group_name for e in first.read_log()] == ["g"]
    first.close()
