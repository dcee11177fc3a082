"""``python -m benchmarks.bench [small|medium|large] [--out DIR] [--sandbox-dir DIR]`` (what scripts/bench runs).

The sandbox DC: ``--sandbox-dir``, else for small ``$WRITEBACK_SANDBOX_DIR``, else
``/var/tmp/writeback-bench-<size>``. A DC already running there is reused as it is, and the benchmark
deletes its own OU afterwards. Otherwise the sandbox is brought up with the size's seeded users (restored
from the snapshot cache after the first time) and, at the end, taken down. In the default directory (medium,
large) the directory is restored from the snapshot again before the limit, and once before measuring when
this run seeded it, so the engine and the limit start from the same files; at the end it is discarded
instead of cleaned object by object (Samba needs minutes to delete a million links, the snapshot restores
in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.bench import report
from benchmarks.bench.runner import Options, run_bench
from benchmarks.bench.sizes import SIZES, Size
from writeback.errors import WritebackError
from writeback.testbed.sandbox import SandboxInfo, load_info, sandbox_down, sandbox_status, sandbox_up
from writeback.testbed.sandbox.snapshot import snapshot_file

DEFAULT_OUT = Path("/var/tmp/writeback-bench/results")


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _sandbox_dir(size: Size, given: str | None) -> Path:
    if given:
        return Path(given)
    if size.name == "small" and os.environ.get("WRITEBACK_SANDBOX_DIR"):
        return Path(os.environ["WRITEBACK_SANDBOX_DIR"])
    return Path(f"/var/tmp/writeback-bench-{size.name}")


def _sandbox(size: Size, directory: Path) -> tuple[SandboxInfo, bool]:
    """The sandbox's info and whether this run started it."""
    status = sandbox_status(directory)
    if status.dc_running:
        _say(f"Reusing the running sandbox DC in {directory}")
        return load_info(directory), False
    # A stopped sandbox keeps the users it was seeded with (small tops them up in its own OU).
    users = load_info(directory).users if status.provisioned else size.sandbox_users
    _say(f"Bringing up the sandbox in {directory} with {users} users (snapshot cached)")
    return sandbox_up(directory, users=users, progress=_say), True


def _restore(size: Size, directory: Path) -> SandboxInfo:
    """Discard the sandbox and bring it up again from its snapshot: the seeded directory, nothing else."""
    _say(f"Restoring the sandbox in {directory} from its snapshot")
    sandbox_down(directory)
    shutil.rmtree(directory)
    return sandbox_up(directory, users=size.sandbox_users, progress=_say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default="small", choices=list(SIZES))
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--sandbox-dir", help="sandbox directory (see above)")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox this run started running"
    )
    parser.add_argument("--keep-objects", action="store_true", help="keep the benchmark OU in AD (debugging)")
    parser.add_argument("--profile", action="store_true", help="cProfile each engine run (work dir)")
    parser.add_argument("--latency-samples", type=int, help="override the size's number of latency samples")
    parser.add_argument("--rule-users", type=int, help="override the number of users for rule evaluation")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    directory = _sandbox_dir(size, args.sandbox_dir)
    seeded_now = not snapshot_file(size.sandbox_users).exists()
    try:
        info, started = _sandbox(size, directory)
    except WritebackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    discard = started and not args.keep_sandbox and args.sandbox_dir is None and size.name != "small"
    try:
        if discard and seeded_now:
            # The limit writes into the directory restored from the snapshot; so does the engine, then.
            info = _restore(size, directory)
        options = Options(
            latency_samples=args.latency_samples,
            rule_users=args.rule_users,
            keep_objects=args.keep_objects or discard,
            profile=args.profile,
            fresh_directory=(lambda: _restore(size, directory)) if discard else None,
        )
        result = run_bench(size, info, args.out / f"work-{size.name}", options, progress=_say)
    except (WritebackError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started and not args.keep_sandbox:
            _say(f"Stopping the sandbox in {directory}")
            sandbox_down(directory)
        if discard:
            _say(f"Discarding {directory} (the next run restores the snapshot)")
            shutil.rmtree(directory, ignore_errors=True)
    table = report.write_all(args.out, result)
    print(table)
    print(f"Results: {args.out}/bench.md, bench.json, bench-{size.name}.json, bench.png", file=sys.stderr)
    if result["problems"]:
        print(json.dumps(result["problems"], indent=2), file=sys.stderr)
    if "error" in result:
        print(
            f"error: the run stopped early (figures so far are in the results): {result['error']}",
            file=sys.stderr,
        )
    return 0 if all(result["checks"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
