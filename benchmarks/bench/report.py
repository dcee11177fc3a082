"""Results on disk: one JSON per size, the merged JSON, a Markdown table and a PNG plot of every size so far.

Results accumulate in the output directory: running ``medium`` after ``small`` keeps small's figures, and
the table and the plot show both.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ORDER = ("small", "medium", "large")
Result = Mapping[str, Any]


def save(out: Path, result: Result) -> dict[str, dict[str, Any]]:
    """Write ``bench-<size>.json`` and return every size's result found in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench-{result['size']}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    results: dict[str, dict[str, Any]] = {}
    for name in ORDER:
        path = out / f"bench-{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text(encoding="utf-8"))
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _get(result: Result, *keys: Any) -> Any:
    value: Any = result
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
    return value


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _cell_text(text: Any, limit: int = 300) -> str:
    """Free text made safe for one Markdown table cell: one line, no pipes, at most ``limit`` characters."""
    if not text:
        return ""
    flat = " ".join(str(text).split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ops(ldap: Mapping[str, int] | None) -> str:
    if not ldap:
        return "-"
    kinds = ("add", "modify", "modrdn", "delete", "search", "bind")
    return ", ".join(f"{ldap[k]:,} {k}" for k in kinds if ldap.get(k))


def _change(result: Result, count: int, what: str) -> str:
    for c in result.get("changes", []):
        if c["count"] == count:
            if what == "time":
                return _num(c["wall_s"], 2)
            return f"{c['ldap'].get('modify', 0):,} modify / {c['writes']:,} writes (min {c['minimal_modifies']:,})"
    return "-"


def _host_check_cell(result: Result, when: str) -> str:
    found = _get(result, "host_check", when)
    return f"{_num(found['cpu_ms'], 0)}; {_num(found['ldap_ms'], 0)}" if found else "-"


Row = tuple[str, Callable[[Result], str]]


def _rows(counts: list[int]) -> list[Row]:
    rows: list[Row] = [
        (
            "Synced users / cloud-only users",
            lambda r: (
                f"{_num(_get(r, 'tenant', 'synced_users'))} / {_num(_get(r, 'tenant', 'cloud_only_users'))}"
            ),
        ),
        (
            "Groups (dynamic)",
            lambda r: f"{_num(_get(r, 'tenant', 'groups'))} ({_num(_get(r, 'tenant', 'dynamic_groups'))})",
        ),
        (
            "Cloud memberships (nested)",
            lambda r: (
                f"{_num(_get(r, 'tenant', 'memberships'))} ({_num(_get(r, 'tenant', 'nested_memberships'))})"
            ),
        ),
        ("Biggest group", lambda r: _num(_get(r, "tenant", "biggest_group"))),
        ("AD member values written", lambda r: _num(_get(r, "tenant", "ad_member_values"))),
        ("**First apply**: wall time (s)", lambda r: _num(_get(r, "first_apply", "wall_s"))),
        (
            "  sync / plan / apply (s)",
            lambda r: " / ".join(
                _num(_get(r, "first_apply", "phases_s", p)) for p in ("sync", "plan", "apply")
            ),
        ),
        ("  engine CPU (s)", lambda r: _num(_get(r, "first_apply", "cpu_s"))),
        ("  peak RSS (MB)", lambda r: _num(_get(r, "first_apply", "max_rss_mb"), 0)),
        ("  LDAP operations", lambda r: _ops(_get(r, "first_apply", "ldap"))),
        (
            "  Graph requests (client / emulator)",
            lambda r: (
                f"{_num(_get(r, 'first_apply', 'graph_requests'))} / {_num(_get(r, 'first_apply', 'emulator_requests'))}"
            ),
        ),
        ("**Limit** (minimal python-ldap): wall (s)", lambda r: _num(_get(r, "limit", "wall_s"))),
        ("  LDAP operations", lambda r: _ops(_get(r, "limit", "ldap"))),
        (
            "**Engine / limit** (whole apply; write phase)",
            lambda r: f"{_num(r.get('ratio_engine_limit'), 2)}; {_num(r.get('ratio_apply_phase_limit'), 2)}",
        ),
        (
            "  host check before apply / limit: CPU; LDAP (ms)",
            lambda r: f"{_host_check_cell(r, 'first_apply')} / {_host_check_cell(r, 'limit')}",
        ),
        ("**Second apply**, no change: wall (s)", lambda r: _num(_get(r, "second_apply", "wall_s"), 2)),
        (
            "  writes (must be 0) / searches",
            lambda r: (
                f"{_num(_get(r, 'second_apply', 'writes'))} / {_num(_get(r, 'second_apply', 'ldap', 'search'))}"
            ),
        ),
    ]
    for count in counts:
        rows.append(
            (
                f"**{count:,} change{'s' if count > 1 else ''}**: converge with apply (s)",
                functools.partial(_change, count=count, what="time"),
            )
        )
        rows.append(("  LDAP", functools.partial(_change, count=count, what="ops")))
    rows += [
        (
            "**`writeback run` latency** p50 / p95 (s)",
            lambda r: f"{_num(_get(r, 'latency', 'p50'), 2)} / {_num(_get(r, 'latency', 'p95'), 2)}",
        ),
        ("  samples", lambda r: _num(len(_get(r, "latency", "samples") or []) or None)),
        (
            "**Rules**: median users/s (slowest)",
            lambda r: (
                f"{_num(_get(r, 'rules', 'median_users_per_s'), 0)} ({_num(_get(r, 'rules', 'slowest_users_per_s'), 0)})"
            ),
        ),
        ("Checks passed", lambda r: ", ".join(k for k, v in (r.get("checks") or {}).items() if v) or "-"),
        ("Run stopped by", lambda r: _cell_text(r.get("error")) or "-"),
        (
            "Checks FAILED",
            lambda r: ", ".join(k for k, v in (r.get("checks") or {}).items() if not v) or "none",
        ),
    ]
    return rows


def markdown(results: Mapping[str, Result]) -> str:
    """One column per size; one row per figure."""
    names = [n for n in ORDER if n in results]
    counts = sorted({c["count"] for n in names for c in results[n].get("changes", [])})
    lines = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, cell in _rows(counts):
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")
    dates = ", ".join(f"{n}: {results[n].get('date', '?')}" for n in names)
    cpus = {results[n].get("host", {}).get("cpus") for n in names}
    lines += ["", f"Runs: {dates}; CPUs: {', '.join(map(str, sorted(c for c in cpus if c)))}."]
    return "\n".join(lines) + "\n"


def plot(results: Mapping[str, Result], path: Path) -> None:
    """Seconds against cloud memberships (log-log), one line per scenario, one point per size run."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ORDER if n in results and _get(results[n], "tenant", "memberships")]
    xs = [float(_get(results[n], "tenant", "memberships")) for n in names]
    series: dict[str, Callable[[Result], Any]] = {
        "first apply (engine)": lambda r: _get(r, "first_apply", "wall_s"),
        "limit (minimal python-ldap)": lambda r: _get(r, "limit", "wall_s"),
        "second apply (no change)": lambda r: _get(r, "second_apply", "wall_s"),
        "1 change, apply": lambda r: _get(r, "changes", 0, "wall_s"),
        "largest change batch (1k small, else 10k), apply": lambda r: (
            _get(r, "changes", -1, "wall_s") if r.get("changes") else None
        ),
        "run latency p95": lambda r: _get(r, "latency", "p95"),
    }
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, get in series.items():
        points = [(x, get(results[n])) for x, n in zip(xs, names, strict=True)]
        points = [(x, float(y)) for x, y in points if y is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, labels=[f"{n}\n{int(x):,}" for x, n in zip(xs, names, strict=True)])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("cloud group memberships")
    ax.set_ylabel("seconds")
    ax.set_title("writeback benchmark: time against tenant size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(out: Path, result: Result) -> str:
    """Save ``result``, then rewrite bench.md and bench.png from every size in ``out``; returns the table."""
    results = save(out, result)
    table = markdown(results)
    (out / "bench.md").write_text("# writeback benchmark\n\n" + table, encoding="utf-8")
    plot(results, out / "bench.png")
    return table
