"""How long to wait before retrying a Graph request.

Graph's throttling guidance: honour ``Retry-After`` when present (seconds; Graph sends fractions such as
"2.128"); otherwise back off exponentially. Jitter spreads retries of parallel clients so they do not hit the
service in lockstep.

A Retry-After wait is capped at :attr:`Backoff.cap` (``source.max_retry_after_seconds``), and a capped wait is
logged: a header saying "come back in an hour" (or an HTTP date far ahead) must not stall the service silently.
Graph's guidance is to wait what the header says
(https://learn.microsoft.com/en-us/graph/throttling#best-practices-to-handle-throttling); the cap only bounds
an unreasonable value, and the default (120 s) is above the waits Graph usually asks for.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

# Status codes Graph documents as transient: throttled, service unavailable, gateway timeout (502 too: it
# comes from the same front-end gateways).
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})

log = logging.getLogger("writeback.graph.retry")


def parse_retry_after(value: str | None, *, now: Callable[[], dt.datetime] | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (fractions allowed) or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        current = now() if now else dt.datetime.now(dt.UTC)
        seconds = (when - current).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the step is fixed, half random, capped at ``cap``.

    ``cap`` also bounds a server's Retry-After (logged when it does)."""

    base: float = 0.5
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before retry number ``attempt`` (0-based). The server's Retry-After wins when given, up to
        ``cap``."""
        if retry_after is not None:
            if retry_after > self.cap:
                log.warning(
                    "Graph asked to wait %.1f s before retrying (Retry-After); waiting %.1f s, the configured "
                    "maximum (source.max_retry_after_seconds)",
                    retry_after,
                    self.cap,
                    extra={"event": "retry_after_capped", "retry_after": retry_after, "cap": self.cap},
                )
                return self.cap
            return retry_after
        step = min(self.cap, self.base * (2.0**attempt))
        return step / 2 + rng.uniform(0, step / 2)
