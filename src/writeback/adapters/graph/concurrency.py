"""How many Graph requests may be in flight at once, adapted to Graph's throttling (AIMD).

Graph throttles directory reads per app and tenant, in resource units per 10 seconds whose budget depends on
the tenant's size, and answers a request over budget with ``429`` and a ``Retry-After`` header
(https://learn.microsoft.com/graph/throttling, "Best practices to handle throttling": wait what Retry-After
says, and "reduce the number of operations per request" and "reduce the frequency of calls";
https://learn.microsoft.com/graph/throttling-limits, "Identity and access service limits"). The budget is not
known in advance, so the number of requests in flight is found the way TCP finds a window:

- it starts at the configured maximum (``source.max_in_flight``): Graph's read budgets are far above what a
  handful of connections can spend, so a first read rarely meets a 429;
- a 429 (or a 503 with Retry-After) **halves** it, once per burst: the requests already in flight when the
  limit dropped come back throttled too, and must not halve it again;
- a ``Retry-After`` pauses **every** new request until it has passed: the budget is the app's, not the
  request's, so any other request sent meanwhile would be throttled as well and only extend the wait;
- each run of ``limit`` requests answered without throttling **grows** it by one, up to the maximum.

:class:`AdaptiveLimit` is shared by the threads of one :class:`~writeback.adapters.graph.client.GraphClient`;
the client takes a slot around each HTTP attempt (its own retries included) and reports the outcome.
:func:`map_concurrent` runs a function over items with a pool of threads, results in input order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_MAX_IN_FLIGHT = 8
MAX_IN_FLIGHT_LIMIT = 64  # more threads than this buys nothing against one tenant's budget

_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True, slots=True)
class Slot:
    """One request's turn: the limit's epoch when it was taken (a 429 halves the limit once per epoch)."""

    epoch: int


class AdaptiveLimit:
    """At most :attr:`limit` requests in flight; halved on throttling, grown by one per ``limit`` successes.

    ``clock`` and ``sleep`` are replaceable for tests (``wait`` must then not block: see :meth:`acquire`)."""

    def __init__(
        self,
        maximum: int = DEFAULT_MAX_IN_FLIGHT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError("the maximum number of requests in flight must be 1 or more")
        self.maximum = maximum
        self._clock = clock
        self._cond = threading.Condition()
        self._limit = maximum
        self._in_flight = 0
        self._epoch = 0
        self._successes = 0
        self._paused_until = 0.0
        self.decreases = 0  # how many times a 429 halved the limit (for stats and tests)
        self.peak_in_flight = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def paused_for(self) -> float:
        """Seconds left of the last Retry-After pause (0: none)."""
        return max(0.0, self._paused_until - self._clock())

    def acquire(self, *, waited: bool = False) -> Slot:
        """Wait for a free slot (and for any Retry-After pause to pass); the caller must :meth:`release` it.

        ``waited``: the caller is retrying after waiting a Retry-After itself (the client's own, capped and
        replaceable sleep): it is not held by the pause again, only by the limit."""
        with self._cond:
            while True:
                pause = self._paused_until - self._clock()
                if pause > 0 and not waited:
                    self._cond.wait(pause)
                    continue
                if self._in_flight < self._limit:
                    break
                self._cond.wait()
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            return Slot(self._epoch)

    def release(self, slot: Slot, *, throttled: bool = False, retry_after: float | None = None) -> None:
        """Give the slot back with its outcome: a success grows the limit slowly; a throttled answer halves it
        (once for all the requests of the same epoch) and a Retry-After pauses every new request."""
        with self._cond:
            self._in_flight -= 1
            if throttled:
                self._throttled(slot, retry_after)
            elif slot.epoch == self._epoch:
                self._successes += 1
                if self._successes >= self._limit and self._limit < self.maximum:
                    self._limit += 1
                    self._epoch += 1
                    self._successes = 0
            self._cond.notify_all()

    def throttled(self, slot: Slot, retry_after: float | None) -> None:
        """A throttled answer to part of a request whose slot was already given back: an item of a JSON batch
        (each is evaluated against the limits on its own)."""
        with self._cond:
            self._throttled(slot, retry_after)
            self._cond.notify_all()

    def current(self) -> Slot:
        """The epoch now, for :meth:`throttled` of the items of a request about to be sent."""
        with self._cond:
            return Slot(self._epoch)

    def _throttled(self, slot: Slot, retry_after: float | None) -> None:
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)
        if slot.epoch == self._epoch:
            self._limit = max(1, self._limit // 2)
            self._epoch += 1
            self._successes = 0
            self.decreases += 1


def map_concurrent(fn: Callable[[_In], _Out], items: Iterable[_In], workers: int) -> Iterator[_Out]:
    """``fn`` over ``items`` with up to ``workers`` threads, results in input order (like ``map``).

    The first exception is raised when its result is reached; the items not started yet are then cancelled,
    so a failure does not wait for the rest of the work."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="graph")
    futures: list[Future[_Out]] = []
    try:
        futures = [pool.submit(fn, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
