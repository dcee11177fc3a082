"""The console's provisioning log at a million rows: how long each filter of the Log page and /api/log takes.

Fills a SQLite state (the default backend) with ``--rows`` log rows spread over 30 days, 2,000 groups, 5,000
runs and the engine's actions and results, then times the queries the console runs: the first page unfiltered,
by status, by action, by run, by group text, by date range, a deep page, one row, the chart's actions per day
and the hourly retention prune. Prints a Markdown table (median of ``--repeat`` runs, milliseconds).

    .venv/bin/python -m benchmarks.console_log [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from writeback.adapters.state.sqlbase import LogQuery
from writeback.adapters.state.sqlite import SqliteStore

ACTIONS = ("create", "update", "move", "add_members", "remove_members", "delete", "skip", "held")
RESULTS = ("success", "success", "success", "success", "error", "skipped", "info", "held")


def fill(store: SqliteStore, rows: int, seed: int = 7) -> float:
    """``rows`` log rows in 30 days; returns the time of the newest."""
    rng = random.Random(seed)
    now = time.time()
    batch: list[tuple[Any, ...]] = []
    with store.batch():
        for i in range(rows):
            g = rng.randrange(2000)
            batch.append(
                (
                    now - 30 * 86400 * (rows - i) / rows,
                    f"run{rng.randrange(5000):05d}",
                    f"{g:08d}-0000-0000-0000-{g:012d}",
                    f"Group {g}",
                    f"CN=Group {g}_{g:012d},OU=Writeback,DC=corp,DC=example,DC=com",
                    rng.choice(ACTIONS),
                    rng.choice(RESULTS),
                    None,
                    '{"members": 3}',
                )
            )
            if len(batch) == 10_000:
                store.db.executemany(
                    "INSERT INTO log (time, run_id, cloud_id, group_name, dn, action, result, error, detail) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    batch,
                )
                batch.clear()
        if batch:
            store.db.executemany(
                "INSERT INTO log (time, run_id, cloud_id, group_name, dn, action, result, error, detail) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                batch,
            )
    return now


def timed(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "state.sqlite"))
        start = time.perf_counter()
        now = fill(store, args.rows)
        print(f"{args.rows:,} log rows written in {time.perf_counter() - start:.1f} s\n")
        queries: dict[str, Callable[[], object]] = {
            "first page (100 rows), no filter": lambda: store.query_log(LogQuery()),
            "status = error": lambda: store.query_log(LogQuery(result="error")),
            "action = remove_members": lambda: store.query_log(LogQuery(action="remove_members")),
            "one run": lambda: store.query_log(LogQuery(run_id="run01234")),
            "group text 'Group 1234'": lambda: store.query_log(LogQuery(text="Group 1234")),
            "cloud id": lambda: store.query_log(LogQuery(text="00001234-0000-0000-0000-000000001234")),
            "last 24 hours, errors": lambda: store.query_log(LogQuery(since=now - 86400, result="error")),
            "page 1,000 (offset 100,000)": lambda: store.query_log(LogQuery(offset=100_000)),
            "one row by id": lambda: store.log_entry(args.rows // 2),
            "chart: actions per day, 30 days": lambda: store.log_actions_per_day(now - 30 * 86400),
            "retention prune (nothing due)": lambda: store.prune_log(now - 90 * 86400),
        }
        print("| query | median ms |\n|---|---:|")
        for name, fn in queries.items():
            print(f"| {name} | {timed(fn, args.repeat):.1f} |")
        store.close()


if __name__ == "__main__":
    main()
