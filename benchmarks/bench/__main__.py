"""``python -m benchmarks.bench [small|medium|large] [--runs N] [--out DIR] [--sandbox-dir DIR]
[--graph-latency-ms N] ...`` (what scripts/bench runs); ``… soak [--minutes N] [size]`` and ``… biggroup [--members N]`` run the service soak
(:mod:`benchmarks.bench.soak`) and the big-group benchmark (:mod:`benchmarks.bench.biggroup`); ``… users
[size]`` the accounts for cloud-only members (:mod:`benchmarks.bench.users`).

``--runs N`` runs the whole size N times in one invocation (each run on the directory restored from the
snapshot when the run owns it) and reports every run, min / median / max, and each goal as met only when
every run met it.

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
import sys
from pathlib import Path
from typing import Any

from benchmarks.bench import report, runs
from benchmarks.bench.e2e_report import READ_CONCURRENCY
from benchmarks.bench.runner import Options, run_bench
from benchmarks.bench.sandboxes import DEFAULT_OUT, release, restore, sandbox, sandbox_dir, say
from benchmarks.bench.sizes import SIZES
from writeback.errors import WritebackError
from writeback.testbed.sandbox.snapshot import snapshot_file


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _milliseconds(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 600_000.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 600000 ms, not {text}")
    return value


def _concurrencies(text: str) -> tuple[int, ...]:
    """``1,4,8,16`` -> (1, 4, 8, 16); ``0`` -> () (skip the measurement)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from exc
    if values == (0,):
        return ()
    if not values or any(not 1 <= v <= 256 for v in values):
        raise argparse.ArgumentTypeError(f"each number must be between 1 and 256 (or just 0), not {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] == "soak":
        from benchmarks.bench.soak import main as soak_main

        return soak_main(args_list[1:])
    if args_list and args_list[0] == "biggroup":
        from benchmarks.bench.biggroup import main as biggroup_main

        return biggroup_main(args_list[1:])
    if args_list and args_list[0] == "users":
        from benchmarks.bench.users import main as users_main

        return users_main(args_list[1:])
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__.splitlines()[0],
        epilog="Also: scripts/bench soak [--minutes N] [size]; scripts/bench biggroup [--members N]; "
        "scripts/bench users [size] (accounts for cloud-only members; --help for its options)",
    )
    parser.add_argument("size", nargs="?", default="small", choices=list(SIZES))
    parser.add_argument(
        "--runs",
        type=_positive,
        default=1,
        help="run the size N times; goals count as met when met in every run",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--sandbox-dir", help="sandbox directory (see above)")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox this run started running"
    )
    parser.add_argument(
        "--scratch-sandbox",
        action="store_true",
        help="treat --sandbox-dir like the default directory: restore it from the snapshot before the limit "
        "and each further run, and discard it at the end (medium, large)",
    )
    parser.add_argument("--keep-objects", action="store_true", help="keep the benchmark OU in AD (debugging)")
    parser.add_argument("--profile", action="store_true", help="cProfile each engine run (work dir)")
    parser.add_argument("--latency-samples", type=int, help="override the size's number of latency samples")
    parser.add_argument("--rule-users", type=int, help="override the number of users for rule evaluation")
    parser.add_argument(
        "--graph-latency-ms",
        type=_milliseconds,
        default=0.0,
        help="the emulator answers every Graph request after this fixed delay, as Graph does in 100 ms to "
        "seconds (default 0)",
    )
    parser.add_argument(
        "--graph-per-object-ms",
        type=_milliseconds,
        default=0.0,
        help="and after this much more per object in the answer (default 0)",
    )
    parser.add_argument(
        "--graph-throttle",
        choices=("tenant", "off"),
        default="tenant",
        help="tenant (default): throttle by Graph's resource-unit budget for the tenant's size, 429 with "
        "Retry-After; off: never",
    )
    parser.add_argument(
        "--read-concurrency",
        type=_concurrencies,
        default=READ_CONCURRENCY,
        help="measure the Graph read alone with these numbers of requests in flight, comma-separated "
        "(default 1,4,8,16; 0 to skip)",
    )
    parser.add_argument(
        "--stream-first-apply",
        action="store_true",
        help="run the engine with [source] stream_first_apply = true (groups written while the first read "
        "goes on; off by default in writeback)",
    )
    args = parser.parse_args(args_list)
    size = SIZES[args.size]
    directory = sandbox_dir(size, args.sandbox_dir)
    seeded_now = not snapshot_file(size.sandbox_users).exists()
    try:
        info, started = sandbox(size, directory)
    except WritebackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    scratch = args.sandbox_dir is None or args.scratch_sandbox
    discard = started and not args.keep_sandbox and scratch and size.name != "small"
    try:
        if discard and seeded_now:
            # The limit writes into the directory restored from the snapshot; so does the engine, then.
            info = restore(size, directory)
        options = Options(
            latency_samples=args.latency_samples,
            rule_users=args.rule_users,
            keep_objects=args.keep_objects or discard,
            profile=args.profile,
            fresh_directory=(lambda: restore(size, directory)) if discard else None,
            graph_latency_ms=args.graph_latency_ms,
            graph_per_object_ms=args.graph_per_object_ms,
            graph_throttle=args.graph_throttle,
            read_concurrency=args.read_concurrency,
            stream_first_apply=args.stream_first_apply,
        )
        for n in range(1, args.runs + 1):
            if args.runs > 1:
                say(f"Run {n} of {args.runs}")
            if n > 1 and discard:
                info = restore(size, directory)  # every run starts from the seeded directory
            results.append(run_bench(size, info, args.out / f"work-{size.name}", options, progress=say))
    except (WritebackError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not results:
            return 1
        # A later run could not start (e.g. the restore failed): keep the runs that were measured.
        results[-1] = {**results[-1], "checks": {**results[-1]["checks"], "run_completed": False}}
        results[-1]["error"] = f"the next run could not start: {exc}"
    finally:
        release(directory, stop=started and not args.keep_sandbox, discard=discard)
    result = runs.combine(results)
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
