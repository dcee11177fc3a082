"""How long to wait before retrying a Graph request.

Graph's throttling guidance: honour ``Retry-After`` when present (seconds; Graph sends fractions such as
"2.128"); otherwise back off exponentially. Jitter spreads retries of parallel clients so they do not hit the
service in lockstep.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass

# Status codes Graph documents as transient: throttled, service unavailable, gateway timeout (502 too: it
# comes from the same front-end gateways).
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


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
    """Exponential backoff with "equal jitter": half the step is fixed, half random, capped at ``cap``."""

    base: float = 0.5
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before retry number ``attempt`` (0-based). The server's Retry-After wins when given."""
        if retry_after is not None:
            return retry_after
        step = min(self.cap, self.base * (2.0**attempt))
        return step / 2 + rng.uniform(0, step / 2)
