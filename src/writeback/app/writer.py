"""The apply's writer thread (issue 27): the LDAP writes of one journal batch go on while the engine journals
the next batch and finishes the one before.

Why: in a first apply the DC is the bottleneck, and between two batches it used to wait while the engine
wrote the next batch's pending rows (with their member index rows: seconds at medium) and finished the last
one (docs/benchmarks.md, "Issue 27: keeping the DC busy"). SQLite, psycopg and python-ldap's wait for an
answer all release the GIL, so a second thread overlaps the two.

Who uses what. The state store is used by the engine's thread only (an SQLite connection belongs to the
thread that opened it); during an apply the directory is used by the writer thread only (python-ldap's
connection is not shared between threads). So the writer thread calls the directory, the apply's
``should_stop`` and ``progress`` callbacks, and the directory's write fence (``fence_writes``); the engine's
thread journals, checks the leader lease in the database (``guard``) and records what the writer reports.

The write-ahead journal keeps its rules (:meth:`writeback.app.engine.Engine.apply`): a batch is handed over
only once its pending rows are committed, so no change is written without its row, and a kill at any moment
leaves pending rows (at most this batch's and the next one's) that the next apply marks interrupted.

The GIL. The engine's thread spends part of its journaling in Python (building rows, keying member DNs), and
the writer needs the GIL back after each wait for the DC's answer; by default a thread waiting for the GIL gets
it only after the holder's switch interval (5 ms), and it asks several times per LDAP operation, each wait one
the DC may spend without a request. While a writer runs, the interpreter's switch interval is lowered to
:data:`SWITCH_INTERVAL` (and restored after), so the writer's turn comes within a fraction of a millisecond
(``sys.setswitchinterval``). The effect measured is small (docs/benchmarks.md, "Issue 27: keeping the DC busy").

This module is generic over the batch type and knows nothing of LDAP or SQL.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")

# Batches journaled ahead of the one being written: one is enough to keep the writer busy (the next batch is
# ready when the current one ends) and keeps what a kill leaves pending small.
AHEAD = 1

# The interpreter's switch interval (seconds) while a writer runs: see the module docstring.
SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


def _shorten_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1


def _restore_switch_interval() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0:
            sys.setswitchinterval(_switch_saved)


class WriterThread(Generic[B]):
    """Runs ``write(batch)`` for each batch handed over, in order, in one thread.

    ``write`` returns False to stop (a stop requested, the directory unavailable); an exception it raises
    stops the thread too and is kept in :attr:`error` for the engine's thread to raise. After a stop, the
    batches still handed over are given back unwritten. Every batch handed over comes back through
    :meth:`done` or :meth:`close`, written or not, so its rows are finished or dropped.
    """

    def __init__(self, write: Callable[[B], bool], name: str = "writeback-writer") -> None:
        self._write = write
        self._todo: queue.SimpleQueue[B | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[B] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._handed = self._returned = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        _shorten_switch_interval()
        self._closed = False
        self._thread.start()

    @property
    def halted(self) -> bool:
        """True once no more batches are written (stopped by ``write``, an error, or :meth:`halt`)."""
        return self._halt.is_set()

    def halt(self) -> None:
        """Write no more: the change being written ends, then nothing more is sent (``write`` asks
        :attr:`halted` between changes)."""
        self._halt.set()

    def submit(self, batch: B) -> None:
        """Hand over a batch (its pending rows already committed)."""
        self._handed += 1
        self._todo.put(batch)

    @property
    def in_hand(self) -> int:
        """Batches handed over and not yet given back."""
        return self._handed - self._returned

    def done(self) -> B:
        """The oldest batch handed over, once written (or left unwritten after a stop). Blocks."""
        batch = self._done.get()
        self._returned += 1
        return batch

    def close(self) -> list[B]:
        """No more batches: wait for the thread to end and give back every batch not yet given back."""
        self._todo.put(None)
        self._thread.join()
        if not self._closed:
            self._closed = True
            _restore_switch_interval()
        rest: list[B] = []
        while self.in_hand:
            rest.append(self.done())
        return rest

    def _run(self) -> None:
        while (batch := self._todo.get()) is not None:
            if not self._halt.is_set():
                try:
                    if not self._write(batch):
                        self._halt.set()
                except BaseException as exc:  # handed to the engine's thread, which raises it
                    self.error = exc
                    self._halt.set()
            self._done.put(batch)
