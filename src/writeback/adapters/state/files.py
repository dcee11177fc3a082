"""Files that hold directory data are private: created 0600, in folders created 0700.

The state database (and the -wal/-shm/-journal files SQLite puts next to it), saved plans, the health file
and the writer lock name groups, members and DNs of the directory; other local users have no business
reading them. Folders that already exist are left as they are (they may be the administrator's own, such as
the working directory); folders writeback creates are 0700.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is left alone."""
    folder = Path(path)
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by another process: theirs to set
            continue
        os.chmod(new, DIR_MODE)  # mkdir's mode is masked by the umask; set it exactly
    return folder


def private_file(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 when missing; make an existing file 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: str | Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (a temporary file, 0600, renamed over it)."""
    target = Path(path)
    private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode only counts for a new file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
