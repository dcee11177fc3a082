"""Files that hold directory data are private: created 0600, in folders created 0700.

The state database (and the -wal/-shm/-journal files SQLite puts next to it), saved plans, the health file
and the writer lock name groups, members and DNs of the directory; other local users have no business
reading them. Folders that already exist are left as they are (they may be the administrator's own, such as
the working directory); folders writeback creates are 0700.

The database file itself is only ever touched by its path, never opened by a descriptor of writeback's own
(:func:`private_database` says why: SQLite's locks are the process's, and any close drops them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
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


def refuse_link(target: Path) -> None:
    """Raise OSError ELOOP naming ``target`` when it is a symbolic link (dangling or not).

    writeback's own files are never reached through a link: whoever points its output somewhere else through
    one should be told, not silently followed (chmod, open) nor overruled (replace)."""
    if target.is_symlink():
        raise OSError(
            errno.ELOOP,
            f"{target} is a symbolic link; writeback does not write through links (remove it, or give the "
            "path of a regular file)",
            str(target),
        )


def private_database(path: str | Path) -> None:
    """Make the SQLite database file at ``path`` 0600, creating it empty (a valid, empty database) when missing,
    without ever holding a descriptor of it while it is reachable by that name.

    SQLite's locks are POSIX advisory locks: they belong to the process, and closing *any* descriptor of the
    file drops every lock the process holds on it, those of its open SQLite connections included. A process
    that then looks unlocked lets the next process to close the database believe it is the last user: it
    checkpoints and unlinks the WAL under the still-running connection ("How To Corrupt An SQLite Database
    File", https://www.sqlite.org/howtocorrupt.html section 2.2; https://www.sqlite.org/lockingv3.html
    section 6). The console opens a store per request in the service's process, so the file is only ever
    touched by its path here: ``chmod(2)`` when it exists; when it does not, a private file is made under a
    temporary name, closed, then linked into place (``link(2)`` fails rather than replace a file another
    process created meanwhile). Nobody can hold a lock on a file that was not yet there.
    """
    target = Path(path)
    refuse_link(target)  # chmod(2) follows links: a planted one would make someone else's file 0600
    try:
        os.chmod(target, FILE_MODE)
        return
    except FileNotFoundError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is masked by the umask; set it exactly
    finally:
        os.close(fd)
    try:
        os.link(tmp, target)
    except FileExistsError:  # another process created it meanwhile: make it private by its path
        os.chmod(target, FILE_MODE)
    except OSError:
        # A file system without hard links: create it in place, exclusively (O_EXCL fails if it exists), so
        # the descriptor closed here is of a file no other process can have locked yet; only a store opened
        # by another thread of this process in those microseconds could be, hence the link above first.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            os.chmod(target, FILE_MODE)
        else:
            try:
                os.fchmod(fd, FILE_MODE)
            finally:
                os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_private(path: str | Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (a new temporary file, 0600, renamed over it).

    Saved plans (``plan --out``, often run as root) and the health file go to folders other local users may be
    able to write. So the temporary file is made by :func:`tempfile.mkstemp` in the target's folder: a random
    name opened ``O_CREAT | O_EXCL`` (which never follows a link, nor opens a file someone else made), instead of
    a predictable ``.NAME.PID.tmp`` an attacker could plant as a link to a root-owned file. A target that is
    itself a symbolic link is refused (OSError ELOOP naming the path): ``os.replace`` would only replace the link,
    but whoever points writeback's output somewhere else through a link should be told, not silently overruled.
    """
    target = Path(path)
    private_dir(target.parent)
    refuse_link(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # mkstemp's 0600 is masked by the umask; set it exactly
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
