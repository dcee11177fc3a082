"""Several runs of one size in one invocation (``scripts/bench medium --runs 3``) combined into one result.

The combined result is the last run's result (so every single-run table cell still reads it) plus:

- ``runs``: every run's own result, in order;
- ``summary``: for the figures worth comparing, each run's value and their min / median / max;
- ``targets``: each goal with every run's figure, met only when it was met in **every** run (issue 17's
  "reliably"); a goal with no figure in some run is not met reliably either;
- ``checks``: a correctness check passes only when it passed in every run; ``problems`` carry their run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]


def _get(result: Result, *keys: Any) -> Any:
    value: Any = result
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def _change(result: Result, count: int) -> Any:
    return next((c.get("wall_s") for c in result.get("changes", []) if c.get("count") == count), None)


# Figure name -> how to read it from one run's result (seconds unless the name says otherwise).
FIGURES: dict[str, Callable[[Result], Any]] = {
    "first_apply_s": lambda r: _get(r, "first_apply", "wall_s"),
    "first_apply_graph_read_s": lambda r: _get(r, "first_apply", "timings_s", "graph_read"),
    "first_apply_planning_s": lambda r: _get(r, "first_apply", "timings_s", "planning"),
    "first_apply_ad_read_s": lambda r: _get(r, "first_apply", "timings_s", "ad_read"),
    "first_apply_ad_write_s": lambda r: _get(r, "first_apply", "timings_s", "ad_write"),
    "first_apply_rss_mb": lambda r: _get(r, "first_apply", "max_rss_mb"),
    "graph_full_read_s": lambda r: _get(r, "graph_full_read", "sync_s"),
    "limit_s": lambda r: _get(r, "limit", "wall_s"),
    "engine_limit_ratio": lambda r: r.get("ratio_engine_limit"),
    "apply_phase_limit_ratio": lambda r: r.get("ratio_apply_phase_limit"),
    "dc_cpu_write_limit_ratio": lambda r: r.get("ratio_dc_cpu_write_limit"),
    "no_change_s": lambda r: _get(r, "second_apply", "wall_s"),
    "no_change_rss_mb": lambda r: _get(r, "second_apply", "max_rss_mb"),
    "deep_no_change_s": lambda r: _get(r, "deep_apply", "wall_s"),
    "deep_no_change_rss_mb": lambda r: _get(r, "deep_apply", "max_rss_mb"),
    "one_change_s": lambda r: _change(r, 1),
    "latency_p95_s": lambda r: _get(r, "latency", "p95"),
    "e2e_limit_s": lambda r: _get(r, "e2e_limit", "wall_s"),
    "engine_e2e_limit_ratio": lambda r: r.get("ratio_engine_e2e_limit"),
}


def summarize(values: Sequence[Any]) -> dict[str, Any]:
    """Each run's value, and min / median / max over the runs that have one (None when none has)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return {
        "values": list(values),
        "min": min(numbers) if numbers else None,
        "median": statistics.median(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
    }


def _reliably(mets: Sequence[bool | None]) -> bool | None:
    """Met in every run: True; missed (or not measured) in some run where others measured it: False;
    no run measured it (or it is no goal at this size): None."""
    if all(m is None for m in mets):
        return None
    return all(m is True for m in mets)


def combine(results: Sequence[Result]) -> dict[str, Any]:
    """One result from ``results`` (runs of the same size, in order). A single run is returned as it is,
    with ``runs`` of one, so readers need not tell the two apart."""
    if not results:
        raise ValueError("no runs to combine")
    last = dict(results[-1])
    runs = [dict(r) for r in results]
    combined: dict[str, Any] = {**last, "runs": runs}
    if len(results) == 1:
        return combined
    combined["summary"] = {name: summarize([get(r) for r in runs]) for name, get in FIGURES.items()}
    names = list(dict.fromkeys(k for r in runs for k in (r.get("targets") or {})))
    targets: dict[str, Any] = {}
    for name in names:
        per_run = [_get(r, "targets", name) or {} for r in runs]
        goal = next((t.get("goal") for t in per_run if t.get("goal")), None)
        targets[name] = {
            "goal": goal,
            "value": [t.get("value") for t in per_run],
            "met": _reliably([t.get("met") for t in per_run]),
            "met_per_run": [t.get("met") for t in per_run],
        }
    combined["targets"] = targets
    check_names = list(dict.fromkeys(k for r in runs for k in (r.get("checks") or {})))
    combined["checks"] = {
        name: all((r.get("checks") or {}).get(name, False) for r in runs) for name in check_names
    }
    combined["problems"] = [f"run {n}: {p}" for n, r in enumerate(runs, 1) for p in r.get("problems", [])]
    errors = [f"run {n}: {r['error']}" for n, r in enumerate(runs, 1) if r.get("error")]
    if errors:
        combined["error"] = "; ".join(errors)
    else:
        combined.pop("error", None)
    combined["date"] = runs[0].get("date")
    return combined
