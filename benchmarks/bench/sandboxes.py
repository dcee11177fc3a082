"""The sandbox DC a benchmark runs on: which directory, bringing it up, restoring it from its snapshot."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.bench.sizes import Size
from writeback.testbed.sandbox import SandboxInfo, load_info, sandbox_down, sandbox_status, sandbox_up

DEFAULT_OUT = Path("/var/tmp/writeback-bench/results")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sandbox_dir(size: Size, given: str | None) -> Path:
    if given:
        return Path(given)
    if size.name == "small" and os.environ.get("WRITEBACK_SANDBOX_DIR"):
        return Path(os.environ["WRITEBACK_SANDBOX_DIR"])
    return Path(f"/var/tmp/writeback-bench-{size.name}")


def sandbox(size: Size, directory: Path) -> tuple[SandboxInfo, bool]:
    """The sandbox's info and whether this run started it."""
    status = sandbox_status(directory)
    if status.dc_running:
        say(f"Reusing the running sandbox DC in {directory}")
        return load_info(directory), False
    # A stopped sandbox keeps the users it was seeded with (small tops them up in its own OU).
    users = load_info(directory).users if status.provisioned else size.sandbox_users
    say(f"Bringing up the sandbox in {directory} with {users} users (snapshot cached)")
    return sandbox_up(directory, users=users, progress=say), True


def restore(size: Size, directory: Path) -> SandboxInfo:
    """Discard the sandbox and bring it up again from its snapshot: the seeded directory, nothing else."""
    say(f"Restoring the sandbox in {directory} from its snapshot")
    sandbox_down(directory)
    shutil.rmtree(directory)
    return sandbox_up(directory, users=size.sandbox_users, progress=say)


def release(directory: Path, *, stop: bool, discard: bool) -> None:
    """At the end of a run: stop the sandbox this run started, and discard a scratch one (the next run restores
    the snapshot)."""
    if stop:
        say(f"Stopping the sandbox in {directory}")
        sandbox_down(directory)
    if discard:
        say(f"Discarding {directory} (the next run restores the snapshot)")
        shutil.rmtree(directory, ignore_errors=True)
