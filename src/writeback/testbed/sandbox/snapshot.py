"""Snapshots of seeded sandboxes, so a big directory is seeded once and restored in seconds afterwards.

Each sandbox also keeps its own snapshot of its DC as `writeback sandbox up` first made it (seeded, with the
service account delegated), whatever its size: `writeback sandbox reset` restores it in seconds.

A snapshot is a gzip tarball of a stopped DC (its database, smb.conf, TLS files and Administrator password)
keyed by the number of generated users and the layout version. GNU tar is used rather than ``tarfile``
because Samba's databases are sparse (25k users: 528 MB apparent, a few MB real) and ``--sparse`` keeps both
the archive and the restore fast. Snapshots hold secrets, so the cache directory and files are private.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from writeback.errors import SandboxError
from writeback.testbed.sandbox import samba
from writeback.testbed.sandbox.layout import BIG_TENANT_USERS, LAYOUT_VERSION, SandboxPaths

MIN_USERS = BIG_TENANT_USERS  # below this, seeding takes less than half a minute: not worth a snapshot
_MEMBERS = ("samba", "tls", "secrets/bind_password", "provisioned.json", "accounts.json")
# A sandbox's own reset point: the DC's files only (its TLS files and secrets stay as they are).
_INITIAL_MEMBERS = ("samba", "provisioned.json")


def cache_dir() -> Path:
    """$WRITEBACK_CACHE, else ~/.cache/writeback."""
    configured = os.environ.get("WRITEBACK_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "writeback"


def snapshot_file(users: int) -> Path:
    return cache_dir() / f"sandbox-v{LAYOUT_VERSION}-{users}.tar.gz"


def wanted(users: int) -> bool:
    return users >= MIN_USERS


def _tar(args: list[str], what: str) -> None:
    tar = shutil.which("tar")
    if tar is None:
        raise SandboxError("GNU tar is needed for sandbox snapshots but was not found")
    result = subprocess.run([tar, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"{what} failed: {result.stderr.strip()[-1000:]}")


def save(paths: SandboxPaths, users: int) -> Path:
    """Archive the stopped DC of ``paths`` as the snapshot for ``users``; atomic, so readers never see half."""
    return _archive(paths, snapshot_file(users), _MEMBERS)


def _archive(paths: SandboxPaths, target: Path, members: tuple[str, ...]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        present = [m for m in members if (paths.root / m).exists()]
        # gzip -1: the databases are mostly holes and repeated index pages; the fastest level compresses them
        # nearly as well and keeps saving and restoring within a second or two.
        _tar(
            ["--sparse", "--use-compress-program=gzip -1", "-cf", str(tmp), "-C", str(paths.root), *present],
            f"writing snapshot {target}",
        )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def save_initial(paths: SandboxPaths) -> Path:
    """Archive this sandbox's stopped, freshly made DC as the state `writeback sandbox reset` goes back to."""
    return _archive(paths, paths.initial_snapshot, _INITIAL_MEMBERS)


def has_initial(paths: SandboxPaths) -> bool:
    return paths.initial_snapshot.is_file()


def restore_initial(paths: SandboxPaths) -> None:
    """Replace the stopped DC's files with the initial snapshot's. The TLS files and secrets are not in it:
    they never change, so the DC keeps its CA, certificate and passwords."""
    source = paths.initial_snapshot
    if not source.is_file():
        raise SandboxError(f"the sandbox in {paths.root} has no snapshot to reset to ({source} missing)")
    marker = read_marker(paths)
    users = marker.get("users") if marker else None
    shutil.rmtree(paths.samba_dir, ignore_errors=True)
    _tar(["-xzf", str(source), "-C", str(paths.root)], f"restoring snapshot {source}")
    restored = read_marker(paths)
    if restored is None or not isinstance(users, int):
        raise SandboxError(f"snapshot {source} has no provisioned.json; run `writeback sandbox up` afresh")
    samba.relocate(paths, str(restored.get("root", "")))
    write_marker(paths, users)


def restore(paths: SandboxPaths, users: int) -> bool:
    """Unpack the snapshot for ``users`` into ``paths`` (False when there is none) and fix its paths."""
    source = snapshot_file(users)
    if not source.is_file():
        return False
    paths.accounts_file.unlink(missing_ok=True)  # older snapshots lack it; never keep a stale one
    _tar(["-xzf", str(source), "-C", str(paths.root)], f"restoring snapshot {source}")
    marker = read_marker(paths)
    if marker is None:
        raise SandboxError(f"snapshot {source} has no provisioned.json; delete it and run again")
    samba.relocate(paths, str(marker.get("root", "")))
    write_marker(paths, users)
    return True


def read_marker(paths: SandboxPaths) -> dict[str, Any] | None:
    """provisioned.json, or None when the directory holds no complete, seeded domain."""
    try:
        data = json.loads(paths.provisioned_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("layout_version") != LAYOUT_VERSION:
        return None
    return data


def write_marker(paths: SandboxPaths, users: int) -> None:
    data = {"layout_version": LAYOUT_VERSION, "users": users, "root": str(paths.root)}
    paths.provisioned_file.write_text(json.dumps(data) + "\n", encoding="utf-8")
