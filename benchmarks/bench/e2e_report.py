"""Issue 27's figures in the report: the Graph profile, the end-to-end limit and its goal, the Graph read alone
at several concurrencies. Pure functions of a run's result (the runner measures, this reads and judges)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]
# Issue 27: engine / end-to-end limit <= 0.7 with --graph-latency-ms 150, <= 1.0 at 0 (medium, large).
E2E_GOALS_BY_LATENCY = {0.0: 1.0, 150.0: 0.7}
E2E_GOAL_SIZES = ("medium", "large")
READ_CONCURRENCY = (1, 4, 8, 16)


def e2e_goal(request_ms: float | None) -> float | None:
    """The ratio goal for a profile's fixed delay; None when the issue sets none for it."""
    if request_ms is None:
        return None
    return E2E_GOALS_BY_LATENCY.get(float(request_ms))


def e2e_ratio(engine_s: float | None, limit_s: float | None) -> float | None:
    if engine_s is None or not limit_s:
        return None
    return round(engine_s / limit_s, 2)


def e2e_target(size: str, result: Result) -> dict[str, Any]:
    """The goal entry for engine / end-to-end limit (met: None when there is no goal for this size or
    profile, or no figure)."""
    latency = (result.get("graph_profile") or {}).get("request_ms")
    goal = e2e_goal(latency)
    value = result.get("ratio_engine_e2e_limit")
    met = None
    if goal is not None and size in E2E_GOAL_SIZES and value is not None:
        met = bool(value <= goal)
    text = "<= 0.7 at 150 ms, <= 1.0 at 0 ms (medium, large)"
    if goal is not None:
        text = f"<= {goal:g} at {latency:g} ms (medium, large)"
    return {"goal": text, "value": value, "met": met}


def read_concurrency_problems(reads: Sequence[Mapping[str, Any]], memberships: int) -> list[str]:
    """A concurrent read that missed member references (or read some twice) is no measurement."""
    return [
        f"{r['concurrency']} in flight read {r['member_refs']:,} member references, the tenant has {memberships:,}"
        for r in reads
        if r.get("member_refs") != memberships
    ]


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def profile_cell(result: Result) -> str:
    profile = result.get("graph_profile")
    if not profile:
        return "-"
    budget = profile.get("budget_per_10s")
    throttle = f"{budget:,} RU / 10 s" if budget else "off"
    return f"{_num(profile.get('request_ms'), 0)} ms + {_num(profile.get('per_object_ms'), 3)} ms/object; throttling {throttle}"


def e2e_cell(result: Result) -> str:
    e2e = result.get("e2e_limit")
    if not e2e:
        return "-"
    parts = " / ".join(_num(e2e.get(k)) for k in ("graph_read_s", "ad_read_s", "ad_write_s"))
    return f"{_num(e2e.get('wall_s'), 1)} ({parts}); {_num(e2e.get('graph_requests'))} requests"


def concurrency_cell(result: Result) -> str:
    reads = result.get("graph_read_concurrency") or []
    if not reads:
        return "-"
    return "; ".join(
        f"{r['concurrency']}: {_num(r.get('seconds'), 1)}"
        + (f" ({_num(r.get('throttled'))} throttled)" if r.get("throttled") else "")
        for r in reads
    )


def rows() -> list[tuple[str, Callable[[Result], str]]]:
    """The report's rows for these figures (label, cell of one size's result)."""
    return [
        ("**Graph profile** (emulator)", profile_cell),
        (
            "**End-to-end limit** (sequential delta read, then minimal LDAP): wall (s) "
            "(Graph read / AD read / AD write)",
            e2e_cell,
        ),
        (
            "**Engine / end-to-end limit** (first apply)",
            lambda r: _num(r.get("ratio_engine_e2e_limit")),
        ),
        (
            "**Graph read alone**, groups then members with N in flight: N: s",
            concurrency_cell,
        ),
    ]
