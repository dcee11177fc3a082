"""The leader lease: of all `writeback run` instances on one PostgreSQL state, one is active, the others stand by.

The lease is a row in the shared database (:meth:`SqlStore.acquire_lease`): a holder, a fencing token and an
end time by the *database's* clock, so the servers' own clocks never matter. Every instance calls
:meth:`LeaderLease.tick` every ``lease_renew_interval`` seconds (a background thread of the service): the
holder extends its lease, the others try to take it and succeed only once it has run out. After a ``kill -9``
of the active instance a standby is active within ``lease_ttl + lease_renew_interval`` seconds (20 s with the
defaults); a clean stop releases the lease, so the takeover is then immediate.

Fencing. A deposed leader (paused, or cut off from the database) must never write to AD after its lease ended.
:meth:`LeaderLease.guard` runs before each change's LDAP writes: it checks *in the database* that this
instance's lease, with its fencing token, still runs, and raises :class:`LeaseLostError` otherwise (also when
the database cannot be reached). The token grows each time the lease changes hands, so a check with an old
token fails even when the same process takes the lease again later. What no lease can close entirely is the
moment between a successful check and the LDAP write it guards (AD takes no fencing token); the guard
therefore also refuses when less than ``margin`` seconds of the lease remain, keeping that window far inside
the lease.

Who holds the lease. :attr:`LeaderLease.current` is what this instance last learnt from the database: its own
lease while active, the other instance's while standing by (so a standby can say *which* instance is active),
with the lease's end turned into this server's Unix time (the database's remaining seconds added to the time of
the answer). The console's ``/api/status`` and the health file show it.

The lease uses its own connection (:class:`~writeback.core.ports.LeaseStore`), never the engine's, so a long write transaction of the
engine never delays a renewal, and a renewal never commits half of the engine's transaction.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from writeback.core.ports import LeaseStore
from writeback.errors import LeaseLostError, StateError

log = logging.getLogger("writeback.lease")
LEASE_NAME = "writeback-run"


def instance_id() -> str:
    """Who this process is, as other instances see it: host, pid and a random part (a restarted process with a
    recycled pid is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def describe_instance(instance: str) -> dict[str, Any]:
    """An instance id (``host:pid:random`` as :func:`instance_id` makes it, or ``host:pid``) as its parts:
    ``{"instance", "host", "pid"}``; host and pid are None when the id has another shape."""
    host, pid = None, None
    parts = instance.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit():
        host, pid = parts[0], int(parts[1])
    elif len(parts) >= 2 and parts[-1].isdigit():  # host:pid (no random part)
        host, pid = instance.rsplit(":", 1)[0], int(parts[-1])
    return {"instance": instance, "host": host, "pid": pid}


@dataclass(frozen=True)
class LeaseView:
    """Who holds the lease, as this instance last learnt from the database."""

    holder: str  # the holder's instance id (host:pid:random)
    token: int  # its fencing token
    expires: float  # Unix time the lease ends unless renewed (this server's clock; see the module doc)
    checked: float  # Unix time of the database's answer

    def to_dict(self) -> dict[str, Any]:
        return {**describe_instance(self.holder), "token": self.token}


class Fence(Protocol):
    """A writer claim that can end: the leader lease. :meth:`guard` asks the database (before each change);
    :meth:`guard_write` checks, without a round trip, that the lease the database last confirmed runs for longer
    than one LDAP write may take (before each write, whose wait is at most :attr:`write_deadline`)."""

    def guard(self) -> None: ...

    def guard_write(self) -> None: ...

    @property
    def write_deadline(self) -> float: ...


class LeaderLease:
    """This instance's side of the lease. ``clock`` (monotonic seconds) is replaceable for tests."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        ttl: float = 15.0,
        renew_interval: float = 5.0,
        holder: str | None = None,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.ttl, self.renew_interval, self.name = store, ttl, renew_interval, name
        self.holder = holder or instance_id()
        self.clock = clock
        # A guard refuses when less than this remains: the LDAP write it allows happens well inside the lease.
        self.margin = min(renew_interval, ttl / 3)
        self.token: int | None = None
        self._valid_until = 0.0  # monotonic; a conservative local view of the lease's end
        self.reason = "not yet tried"  # why this instance is not active (for health and logs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.changed = threading.Event()  # set whenever the role changes
        self.current: LeaseView | None = None  # who holds the lease, as last learnt (see the module doc)

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.token is not None and self.clock() < self._valid_until

    @property
    def role(self) -> str:
        """active, standby, or stopped (after :meth:`stop`)."""
        if self._stop.is_set():
            return "stopped"
        return "active" if self.active else "standby"

    def _seen(self, holder: str, token: int, remaining: float) -> None:
        now = time.time()
        self.current = LeaseView(holder, token, now + remaining, now)

    def tick(self) -> bool:
        """Renew the lease, or take it when it is free. Returns whether this instance holds it now."""
        was = self.active
        sent = self.clock()
        try:
            with self._lock:
                # Who held the lease before this instance takes it over: its database sessions are ended then.
                # A standby that does not get it says who holds it from the same read (one query per tick).
                before = None if was else self.store.lease_holder(self.name)
                grant = self.store.acquire_lease(self.name, self.holder, self.ttl)
                other = None
                if grant is None:
                    other = before if before is not None else self.store.lease_holder(self.name)
        except StateError as exc:
            # The database is gone: keep what the last renewal granted (the guard checks the database itself,
            # so nothing is written meanwhile), and say why.
            self.reason = f"cannot renew the lease: {exc}"
            if self.token is not None and self.clock() >= self._valid_until:
                # Also when it ran out while this process was paused: the taker ended this instance's sessions
                # (the first statement after the pause fails), and this instance says now that it stands by.
                self._lost(self.reason)
            return self.active
        if grant is None:
            if was or self.token is not None:
                self._lost(f"another instance took the lease ({other.holder if other else 'unknown'})")
            self.token = None
            self.current = None
            if other is not None:
                self._seen(other.holder, other.token, other.remaining)
                self.reason = (
                    f"standing by: {other.holder} is active (fencing token {other.token}; its lease runs "
                    f"{max(other.remaining, 0):.1f} s more unless renewed)"
                )
            return False
        if self.token is not None and grant.token != self.token:
            self._lost(f"the lease ran out before it was renewed (fencing token {self.token} ended)")
        self._valid_until = sent + grant.remaining
        self._seen(self.holder, grant.token, grant.remaining)
        new = self.token != grant.token
        if new and before is not None and before.holder != self.holder:
            self._end_sessions_of(before.holder)
        self.token = grant.token
        self.reason = ""
        if new or not was:
            log.info(
                "this instance is now active (fencing token %d)",
                grant.token,
                extra={"event": "role", "role": "active", "token": grant.token, "holder": self.holder},
            )
            self.changed.set()
        return True

    def _end_sessions_of(self, former: str) -> None:
        """End the database sessions of ``former``, which held the lease before this instance took it
        (:meth:`~writeback.adapters.state.leases.LeaseSql.end_sessions`): paused mid-statement, it would keep its
        row locks, and this instance's cycles would wait for them until it resumes. Before this instance's first
        cycle as the active one; a failure is logged, and the cycles then wait for the locks as before."""
        try:
            with self._lock:
                ended = self.store.end_sessions(former)
        except StateError as exc:
            log.warning(
                "could not end the database sessions of %s, which held the lease before: %s; a transaction it "
                "left open keeps its row locks until it resumes or its server ends it",
                former,
                exc,
                extra={"event": "fence_sessions_failed", "former": former},
            )
            return
        if ended:
            log.warning(
                "ended %d database session%s of %s, which held the lease before this instance and may be paused "
                "with its row locks held; its open transaction is rolled back",
                ended,
                "" if ended == 1 else "s",
                former,
                extra={"event": "fenced_sessions", "former": former, "sessions": ended},
            )

    def _lost(self, why: str) -> None:
        log.warning(
            "this instance is no longer active: %s; it writes nothing to AD and stands by",
            why,
            extra={"event": "role", "role": "standby", "token": self.token, "holder": self.holder},
        )
        self.token = None
        self._valid_until = 0.0
        if self.current is not None and self.current.holder == self.holder:
            self.current = None  # not this instance any more; who else holds it, the next tick says
        self.reason = why
        self.changed.set()

    # -- fencing ----------------------------------------------------------------------------------------------
    def guard(self) -> None:
        """Raise :class:`LeaseLostError` unless this instance's lease, with its fencing token, still runs (for
        at least ``margin`` seconds), as the database says now. Called before each batch of LDAP writes."""
        token = self.token
        if token is None or self.clock() >= self._valid_until:
            raise LeaseLostError(
                f"this instance does not hold the leader lease: {self.reason or 'it ran out'}"
            )
        sent = self.clock()
        try:
            with self._lock:
                remaining = self.store.check_lease(self.name, self.holder, token)
        except StateError as exc:
            raise LeaseLostError(
                f"the leader lease cannot be checked, so nothing more is written to AD: {exc}"
            ) from exc
        if remaining is None or remaining < self.margin:
            self._lost(f"the lease with fencing token {token} ended")
            raise LeaseLostError(
                f"the leader lease with fencing token {token} ended (another instance may be active); "
                "nothing more is written to AD"
            )
        self._valid_until = sent + remaining
        self._seen(self.holder, token, remaining)

    @property
    def write_deadline(self) -> float:
        """The longest an LDAP write may wait for its answer: shorter than :attr:`margin`, so a write that
        :meth:`guard_write` lets through has ended before the lease can run out (issue 23)."""
        return max(0.5, self.margin * 0.8)

    def guard_write(self) -> None:
        """Before each LDAP write: raise :class:`LeaseLostError` unless the lease, as the database last
        confirmed it (:meth:`guard` and every renewal), runs for more than :attr:`margin` seconds more. No
        database round trip, so it can run before every modify of a change. The clock is monotonic: it keeps
        counting while the process is stopped, so an instance paused past its lease refuses its next write."""
        if self.token is None or self.clock() + self.margin > self._valid_until:
            reason = self.reason or "less of the lease is left than one write may take"
            raise LeaseLostError(
                f"this instance no longer holds the leader lease ({reason}); nothing more is written to AD"
            )

    # -- the renewing thread ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Tick now, then every ``renew_interval`` seconds in a daemon thread until :meth:`stop`."""
        self.tick()
        self._thread = threading.Thread(target=self._run, name="writeback-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.renew_interval):
            try:
                self.tick()
            except Exception:  # a bug must not end renewals silently: the lease would run out
                log.exception("unexpected error renewing the leader lease", extra={"event": "bug"})

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing; ``release`` ends the lease now so a standby takes over at its next tick."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew_interval + 5)
        token, self.token = self.token, None
        if release and token is not None:
            try:
                with self._lock:
                    self.store.release_lease(self.name, self.holder, token)
                self.current = None  # released: nobody holds it until a standby takes it
                log.info("leader lease released", extra={"event": "role", "role": "stopped", "token": token})
            except StateError as exc:
                log.warning("cannot release the leader lease (it runs out by itself): %s", exc)
