"""The provisioning log's member index (``log_member``, schema migration 9): what indexing every member value of
a change costs an apply. Journals ``--groups`` creates of ``--members`` values each (default 4 x 250,000: a
million values, four of the largest groups writeback writes back) through ``Journal.log_rows``, as an apply's
first batch does, then times one member's history query and the retention prune of those rows.

The values go in sorted, as a plan's creates carry them (writeback.core.planning sorts a new group's members);
``--shuffled`` sends them in random order instead (the index's worst case). SQLite by default; ``--postgres URL``
measures a PostgreSQL database instead (an empty one: the schema is created in it).

    .venv/bin/python -m benchmarks.log_members [--groups 4] [--members 250000] [--shuffled] [--postgres URL]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from writeback.adapters.state.sqlbase import SqlStore
from writeback.core.ports import LogQuery, LogRecord


def run(store: SqlStore, groups: int, members: int, shuffled: bool) -> None:
    values = [
        f"CN=User {i:07d},OU=People,OU=Staff,DC=corp,DC=example,DC=com" for i in range(groups * members)
    ]
    if shuffled:
        random.Random(7).shuffle(values)
    records = [
        LogRecord(
            "bench", "create", cloud_id=f"g{k}", member_values=tuple(values[k * members : (k + 1) * members])
        )
        for k in range(groups)
    ]
    start = time.perf_counter()
    store.log_rows(records)
    took = time.perf_counter() - start
    print(
        f"log_rows: {groups} creates x {members:,} member values: {took:.2f} s ({took / len(values) * 1e6:.1f} µs a value)"
    )
    start = time.perf_counter()
    found = store.query_log(LogQuery(member=(values[len(values) // 3].lower(),)))
    print(f"one member's rows: {(time.perf_counter() - start) * 1000:.1f} ms ({len(found)} row)")
    start = time.perf_counter()
    store.prune_log(time.time() + 60)
    print(f"retention prune of the {groups} rows and their index rows: {time.perf_counter() - start:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--members", type=int, default=250_000)
    ap.add_argument("--shuffled", action="store_true")
    ap.add_argument("--postgres", metavar="URL")
    args = ap.parse_args()
    if args.postgres:
        from writeback.adapters.state.postgres import PostgresStore

        store: SqlStore = PostgresStore(args.postgres)
        try:
            run(store, args.groups, args.members, args.shuffled)
        finally:
            store.close()
        return
    from writeback.adapters.state.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "state.sqlite")
        try:
            run(store, args.groups, args.members, args.shuffled)
        finally:
            store.close()


if __name__ == "__main__":
    main()
