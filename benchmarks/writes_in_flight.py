"""Side experiment (issue 27, "keeping the DC busy"): group adds one at a time against several in flight on one
connection, with and without a second Python thread busy meanwhile (as the engine's thread is while it
journals the next batch, holding the GIL between its SQLite calls).

    python -m benchmarks.writes_in_flight SANDBOX_DIR [--groups 300] [--members 100] [--rounds 3]
        [--windows 1,4] [--busy both|off|on]

Each round writes ``--groups`` groups of ``--members`` users (from the sandbox's Staff OU) with each window (in
the reverse order every other round) into its own OU under the sandbox's base, and times from the first add to
the last answer. The
groups are left in place (deleting member links costs Samba far more than adding them): run it against a
scratch sandbox (the benchmark's, with ``--scratch-sandbox``). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from benchmarks.bench.ldaptools import add_ou, connection, staff_accounts
from writeback.testbed.sandbox.info import load_info


def _busy(stop: threading.Event) -> None:
    """Pure-Python work (like building log rows and normalising member DNs) until told to stop."""
    while not stop.is_set():
        sum(len(str(i).lower()) for i in range(2_000))


def write_groups(conn: Any, ou: str, members: list[bytes], groups: int, window: int) -> float:
    """Add ``groups`` groups carrying ``members`` with at most ``window`` adds in flight; seconds taken."""
    in_flight: deque[int] = deque()
    started = time.perf_counter()
    for n in range(groups):
        if len(in_flight) >= window:
            conn.result3(in_flight.popleft(), all=1, timeout=120)
        dn = f"CN=wif-{n:05d},{ou}"
        modlist = [
            ("objectClass", [b"top", b"group"]),
            ("sAMAccountName", [f"wif{uuid.uuid4().hex[:12]}".encode()]),
            ("member", members),
        ]
        in_flight.append(conn.add_ext(dn, modlist))
    while in_flight:
        conn.result3(in_flight.popleft(), all=1, timeout=120)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sandbox_dir", type=Path)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", default="1,4")
    parser.add_argument("--busy", choices=("both", "off", "on"), default="both")
    args = parser.parse_args()
    info = load_info(args.sandbox_dir)
    windows = [int(w) for w in args.windows.split(",")]
    busy_modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.busy]
    with connection(info) as conn:
        users = [a.dn.encode() for a in staff_accounts(conn, info.users_ou, args.members)]
        base = f"OU=wif-{uuid.uuid4().hex[:8]},{info.base_dn}"
        add_ou(conn, base)
        for rnd in range(args.rounds):
            for busy in busy_modes:
                # Every group adds back-links to the same users, and Samba's adds slow down as they pile up:
                # the order of the windows alternates from round to round (ABBA), so the growth falls on each
                # window alike.
                for window in windows if rnd % 2 == 0 else windows[::-1]:
                    ou = f"OU=r{rnd}-w{window}-{'busy' if busy else 'idle'},{base}"
                    add_ou(conn, ou)
                    stop = threading.Event()
                    worker = threading.Thread(target=_busy, args=(stop,), daemon=True) if busy else None
                    if worker is not None:
                        worker.start()
                    try:
                        seconds = write_groups(conn, ou, users, args.groups, window)
                    finally:
                        stop.set()
                        if worker is not None:
                            worker.join()
                    print(
                        json.dumps(
                            {
                                "round": rnd,
                                "window": window,
                                "busy_thread": busy,
                                "groups": args.groups,
                                "members": len(users),
                                "seconds": round(seconds, 3),
                            }
                        ),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
