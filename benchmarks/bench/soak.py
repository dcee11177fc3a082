"""``scripts/bench soak [--minutes N] [size]``: the long-running service's memory, measured over its life.

The benchmark tenant of ``size`` (default small) is written by one measured first apply (a child process, as
in the size benchmark), then ``writeback run`` (the real CLI, default poll and reconcile intervals) runs in a
child process for ``--minutes`` (default 60) while a few membership changes a minute go through Graph
(``POST``/``DELETE …/members/$ref`` on the emulator: adds and removes of synced users in assigned groups).
Every ``--sample-interval`` seconds the service's ``/proc/<pid>/status`` is read: ``VmRSS`` (resident now)
and ``VmHWM`` (the peak resident size of its whole life, startup cycle included). At the end the benchmark
waits for the service to carry the last change and checks that every group in AD holds exactly the members
the cloud says (the same check as the size benchmark). Results: ``DIR/bench-soak.json`` and a section of
``DIR/bench.md``; the goal is issue 17's ``peak RSS <= 600 MB`` (at large; the same bound is reported at
every size).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench import changes, ldaptools, report, verify
from benchmarks.bench.procmem import read_memory
from benchmarks.bench.runner import TARGET_RSS_MB, bench_ou, bench_tenant, size_accounts
from benchmarks.bench.sandboxes import DEFAULT_OUT, release, sandbox, sandbox_dir, say
from benchmarks.bench.sizes import SIZES, Size
from benchmarks.bench.tenantgen import GeneratedTenant
from benchmarks.bench.workspace import (
    Workspace,
    run_apply,
    start_service,
    stop_service,
    wait_for_first_cycle,
)
from writeback.errors import WritebackError
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator
from writeback.testbed.sandbox import SandboxInfo

CONVERGE_TIMEOUT = 300.0  # after the last change: the service polls every 2 s; a reconcile may be running


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 60.0
    changes_per_minute: int = 4
    sample_interval: float = 5.0


def one_change(handle: EmulatorHandle, gen: GeneratedTenant, rng: random.Random, add: bool) -> None:
    """One membership change through Graph: add a synced user to an assigned group, or remove one."""
    synced = set(gen.synced_ids)
    while True:
        gid = rng.choice(gen.static_ids)
        present = [m for m in gen.members[gid] if m in synced]
        if add or len(present) >= 2:
            break
    if add:
        current = set(gen.members[gid])
        uid = rng.choice(gen.synced_ids)
        while uid in current:
            uid = rng.choice(gen.synced_ids)
        edit = changes.GroupEdit(gid, (uid,), ())
    else:
        edit = changes.GroupEdit(gid, (), (rng.choice(present),))
    changes.make_changes(handle, gen, [edit])


def _converged(info: SandboxInfo, handle: EmulatorHandle, gen: GeneratedTenant, engine_ou: str) -> list[str]:
    with ldaptools.connection(info) as conn:
        found = ldaptools.read_groups(conn, engine_ou)
    return verify.compare(verify.expected_counts(handle, gen), found)


def run_soak(
    size: Size,
    info: SandboxInfo,
    workdir: Path,
    options: SoakOptions,
    progress: Any = say,
    *,
    keep_objects: bool = False,
) -> dict[str, Any]:
    """The whole soak on a running sandbox DC; returns its figures (``checks`` say whether it was exact)."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for pattern in ("state.sqlite*", "health.json", "service.log"):
        for leftover in workdir.glob(pattern):
            leftover.unlink()
    shutil.rmtree(workdir / "emulator", ignore_errors=True)
    rng = random.Random(f"soak-{size.name}")
    result: dict[str, Any] = {
        "kind": "soak",
        "size": size.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": options.minutes,
        "changes_per_minute": options.changes_per_minute,
        "sample_interval_s": options.sample_interval,
        "samples": [],
        "changes": 0,
        "checks": {},
    }
    try:
        with bench_ou(info, size, keep_objects) as (ou, tag):
            users_ou, engine_ou = f"OU=Users,{ou}", f"OU=Engine,{ou}"
            accounts, _ = size_accounts(info, size, users_ou, tag, progress)
            gen = bench_tenant(size, accounts)
            with run_emulator(gen.document, workdir / "emulator") as handle:
                workspace = Workspace(workdir, engine_ou)
                workspace.write_config(info, handle, size.max_members)
                progress("First apply (the service then starts on a written directory, as after a restart)")
                first = run_apply(workspace, "soak-first")
                result["first_apply_s"] = round(first.wall_seconds, 2)
                progress(
                    f"  {first.wall_seconds:.1f} s; starting `writeback run` for {options.minutes:g} min"
                )
                _soak(info, handle, gen, workspace, options, rng, result, progress)
    except RuntimeError as exc:
        result["error"] = str(exc)
        result["checks"]["soak_completed"] = False
        progress(f"Soak stopped: {exc}")
    samples = result["samples"]
    after_first = [s["rss_mb"] for s in samples if s["t"] >= result.get("first_cycle_s", 0.0)]
    result["peak_hwm_mb"] = max((s["hwm_mb"] for s in samples), default=None)
    result["peak_rss_after_first_cycle_mb"] = max(after_first, default=None)
    result["end_rss_mb"] = samples[-1]["rss_mb"] if samples else None
    result["rss_at_10min_mb"] = next((s["rss_mb"] for s in samples if s["t"] >= 600), None)
    peak = result["peak_hwm_mb"]
    result["target"] = {
        "goal": f"<= {TARGET_RSS_MB} MB",
        "value": None if peak is None else round(peak, 1),
        "met": None if peak is None else peak <= TARGET_RSS_MB,
    }
    return result


def _soak(
    info: SandboxInfo,
    handle: EmulatorHandle,
    gen: GeneratedTenant,
    workspace: Workspace,
    options: SoakOptions,
    rng: random.Random,
    result: dict[str, Any],
    progress: Any,
) -> None:
    proc = start_service(workspace, workspace.dir / "service.log")
    started = time.monotonic()
    samples: list[dict[str, float]] = result["samples"]

    def sample() -> None:
        memory = read_memory(proc.pid)
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": round(memory["VmRSS"], 1),
                "hwm_mb": round(memory["VmHWM"], 1),
            }
        )

    try:
        wait_for_first_cycle(workspace, proc, timeout=3600)
        result["first_cycle_s"] = round(time.monotonic() - started, 1)
        sample()
        end = started + options.minutes * 60
        change_every = 60.0 / options.changes_per_minute if options.changes_per_minute else None
        next_change = time.monotonic() + (change_every or 0)
        next_sample = time.monotonic() + options.sample_interval
        next_note = time.monotonic() + 300
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"`writeback run` exited with {proc.returncode} during the soak")
            now = time.monotonic()
            if change_every is not None and now >= next_change:
                one_change(handle, gen, rng, add=result["changes"] % 2 == 0)
                result["changes"] += 1
                next_change += change_every
            if now >= next_sample:
                sample()
                next_sample += options.sample_interval
            if now >= next_note:
                progress(f"  {(now - started) / 60:.0f} min: {samples[-1]} ({result['changes']} changes)")
                next_note += 300
            time.sleep(
                max(0.0, min(next_sample, next_change if change_every else next_sample) - time.monotonic())
            )
        progress(f"Waiting for the service to carry the last changes ({result['changes']} made)")
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        problems = _converged(info, handle, gen, workspace.engine_ou)
        while problems and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"`writeback run` exited with {proc.returncode} before converging")
            time.sleep(2)
            problems = _converged(info, handle, gen, workspace.engine_ou)
        sample()
        result["checks"]["members_exact_at_end"] = not problems
        result["problems"] = problems[:10]
    finally:
        stop_service(proc)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default="small", choices=list(SIZES))
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the service runs (default 60)")
    parser.add_argument(
        "--changes-per-minute", type=int, default=4, help="membership changes a minute (default 4)"
    )
    parser.add_argument(
        "--sample-interval", type=float, default=5.0, help="seconds between RSS samples (default 5)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--sandbox-dir", help="sandbox directory (as for the size benchmark)")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave a sandbox this run started running"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_interval <= 0 or args.changes_per_minute < 0:
        parser.error("--minutes and --sample-interval must be positive, --changes-per-minute 0 or more")
    size = SIZES[args.size]
    directory = sandbox_dir(size, args.sandbox_dir)
    try:
        info, started = sandbox(size, directory)
    except WritebackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    discard = started and not args.keep_sandbox and args.sandbox_dir is None and size.name != "small"
    try:
        options = SoakOptions(args.minutes, args.changes_per_minute, args.sample_interval)
        result = run_soak(size, info, args.out / f"work-soak-{size.name}", options, keep_objects=discard)
    except WritebackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        release(directory, stop=started and not args.keep_sandbox, discard=discard)
    table = report.write_all(args.out, result)
    print(table)
    print(f"Results: {args.out}/bench.md, bench-soak.json", file=sys.stderr)
    return 0 if result["checks"] and all(result["checks"].values()) else 3
