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

from benchmarks.bench import e2e_report, users_report

ORDER = ("small", "medium", "large")
# The scenarios run on their own: bench-soak.json, bench-biggroup.json, bench-users-<size>.json.
EXTRAS = ("soak", "biggroup", *users_report.FILES)
Result = Mapping[str, Any]


def _file_name(result: Result) -> str:
    kind = result.get("kind")
    if kind == "users":
        return f"users-{result['size']}"
    return str(kind) if kind in EXTRAS else str(result["size"])


def save(out: Path, result: Result) -> dict[str, dict[str, Any]]:
    """Write ``bench-<size>.json`` (``bench-soak.json``, ``bench-biggroup.json``) and return every result found
    in ``out``, by size (and "soak", "biggroup")."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench-{_file_name(result)}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    results: dict[str, dict[str, Any]] = {}
    for name in (*ORDER, *EXTRAS):
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


def _dc_cpu_cell(cpu: Any, wall: Any) -> str:
    """The DC's CPU seconds over a write phase and the share of a core they are of its wall time: a low share
    means the DC waited for a CPU (the machine's load), not that it had more to do."""
    if cpu is None:
        return "-"
    return f"{cpu:,.1f} ({cpu / wall:.0%})" if wall else f"{cpu:,.1f}"


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


def _timings(result: Result, which: str) -> str:
    timings = _get(result, which, "timings_s")
    if not _get(result, which):
        return "-"
    parts = ("graph_read", "planning", "ad_read", "ad_write")
    return " / ".join(_num((timings or {}).get(p), 2) for p in parts)


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
        ("  Graph read / planning / AD read / AD write (s)", lambda r: _timings(r, "first_apply")),
        ("  engine CPU (s)", lambda r: _num(_get(r, "first_apply", "cpu_s"))),
        ("  peak RSS (MB)", lambda r: _num(_get(r, "first_apply", "max_rss_mb"), 0)),
        ("  LDAP operations", lambda r: _ops(_get(r, "first_apply", "ldap"))),
        (
            "  Graph requests (client / emulator)",
            lambda r: (
                f"{_num(_get(r, 'first_apply', 'graph_requests'))} / {_num(_get(r, 'first_apply', 'emulator_requests'))}"
            ),
        ),
        (
            "**Graph full read** into a fresh replica (s; with interpreter start); requests",
            lambda r: (
                f"{_num(_get(r, 'graph_full_read', 'sync_s'), 2)} ({_num(_get(r, 'graph_full_read', 'wall_s'), 2)}); "
                f"{_num(_get(r, 'graph_full_read', 'requests'))}"
                if _get(r, "graph_full_read")
                else "-"
            ),
        ),
        *e2e_report.rows(),
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
        (
            "  DC CPU during the writes, s (share of a core): engine / limit; ratio",
            lambda r: (
                f"{_dc_cpu_cell(_get(r, 'first_apply', 'dc_cpu_write_s'), _get(r, 'first_apply', 'phases_s', 'apply'))}"
                f" / {_dc_cpu_cell(_get(r, 'limit', 'dc_cpu_s'), _get(r, 'limit', 'wall_s'))}; "
                f"{_num(r.get('ratio_dc_cpu_write_limit'), 2)}"
            ),
        ),
        ("**Second apply**, no change: wall (s)", lambda r: _num(_get(r, "second_apply", "wall_s"), 2)),
        (
            "  writes (must be 0) / searches",
            lambda r: (
                f"{_num(_get(r, 'second_apply', 'writes'))} / {_num(_get(r, 'second_apply', 'ldap', 'search'))}"
            ),
        ),
        ("  Graph read / planning / AD read / AD write (s)", lambda r: _timings(r, "second_apply")),
        ("  peak RSS (MB)", lambda r: _num(_get(r, "second_apply", "max_rss_mb"), 0)),
        (
            "**Deep apply**, no change (`apply --deep`, the daily deep reconcile): wall (s) / peak RSS (MB)",
            lambda r: (
                f"{_num(_get(r, 'deep_apply', 'wall_s'), 2)} / {_num(_get(r, 'deep_apply', 'max_rss_mb'), 0)}"
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
    """One column per size (its last run); one row per figure. Then the goals, every run of a size run more
    than once, and the soak and big-group scenarios when they were run."""
    names = [n for n in ORDER if n in results]
    if not names:
        return extras_markdown(results)
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
    lines += ["", *goals_markdown(results, names)]
    for name in names:
        lines += runs_markdown(name, results[name])
    return "\n".join(lines) + "\n" + extras_markdown(results)


GOAL_LABELS = {
    "no_change_reconcile_s": "no-change reconcile (second apply), s",
    "engine_limit_ratio": "engine / limit (first apply)",
    "apply_phase_limit_ratio": "write phase / limit",
    "peak_rss_first_apply_mb": "peak RSS, first apply (MB)",
    "peak_rss_no_change_mb": "peak RSS, no-change reconcile (MB)",
    "one_change_one_modify": "one membership change -> one LDAP modify (modifies)",
    "latency_p95_s": "`writeback run` latency p95, s",
    "engine_e2e_limit_ratio": "engine / end-to-end limit (first apply)",
}


def _met(met: Any) -> str:
    return {True: "**met**", False: "**NOT met**"}.get(met, "no goal here")


def _goal_cell(target: Mapping[str, Any] | None) -> str:
    if not target:
        return "-"
    value, met = target.get("value"), target.get("met")
    if isinstance(value, list):  # several runs: every run's figure; met = met in every run
        shown = ", ".join(_num(v, 2) for v in value)
        verdict = _met(met)
        if met is not None:
            verdict += (
                " in every run"
                if met
                else f" in every run ({sum(1 for m in target.get('met_per_run', []) if m)} of {len(value)})"
            )
        return f"{shown}: {verdict}"
    if value is None and met is not None:
        return _met(met)
    return f"{_num(value, 2)}: {_met(met)}"


def goals_markdown(results: Mapping[str, Result], names: list[str]) -> list[str]:
    """Issue 17's goals: each size's figure against the goal, met or not (with several runs: in every run)."""
    keys = list(dict.fromkeys(k for n in names for k in (results[n].get("targets") or {})))
    if not keys:
        return []
    lines = [
        "### Against the goals",
        "",
        "| goal | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in keys:
        goal = next(
            (
                _get(results[n], "targets", key, "goal")
                for n in names
                if _get(results[n], "targets", key, "goal")
            ),
            "",
        )
        label = f"{GOAL_LABELS.get(key, key)} {goal}".strip()
        lines.append(
            f"| {_cell_text(label)} | "
            + " | ".join(_goal_cell(_get(results[n], "targets", key)) for n in names)
            + " |"
        )
    soak = results.get("soak")
    if soak and _get(soak, "target"):
        lines.append(
            f"| peak RSS, `writeback run` soak ({_cell_text(soak.get('size'))}, {_num(_get(soak, 'minutes'), 0)} min) "
            f"{_get(soak, 'target', 'goal')} | "
            + " | ".join(_goal_cell(_get(soak, "target")) if n == soak.get("size") else "-" for n in names)
            + " |"
        )
    return [*lines, ""]


RUN_FIGURE_LABELS = {
    "first_apply_s": "first apply (s)",
    "first_apply_graph_read_s": "  Graph read (s)",
    "first_apply_planning_s": "  planning (s)",
    "first_apply_ad_read_s": "  AD read (s)",
    "first_apply_ad_write_s": "  AD write (s)",
    "first_apply_rss_mb": "  peak RSS (MB)",
    "graph_full_read_s": "Graph full read, fresh replica (s)",
    "limit_s": "limit (s)",
    "engine_limit_ratio": "engine / limit",
    "apply_phase_limit_ratio": "write phase / limit",
    "no_change_s": "no-change reconcile (s)",
    "no_change_rss_mb": "  peak RSS (MB)",
    "one_change_s": "1 change, apply (s)",
    "latency_p95_s": "latency p95 (s)",
    "e2e_limit_s": "end-to-end limit (s)",
    "engine_e2e_limit_ratio": "engine / end-to-end limit",
}


def runs_markdown(name: str, result: Result) -> list[str]:
    """Every run of a size run more than once, with min / median / max (nothing for a single run)."""
    runs = result.get("runs") or []
    summary = result.get("summary") or {}
    if len(runs) < 2 or not summary:
        return []
    header = [f"run {n}" for n in range(1, len(runs) + 1)] + ["min", "median", "max"]
    lines = [
        f"### {name}: {len(runs)} runs",
        "",
        "| | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    for key, figure in summary.items():
        cells = [_num(v, 2) for v in figure.get("values", [])]
        cells += [_num(figure.get(k), 2) for k in ("min", "median", "max")]
        lines.append(f"| {RUN_FIGURE_LABELS.get(key, key)} | " + " | ".join(cells) + " |")
    checks = [", ".join(k for k, v in (r.get("checks") or {}).items() if not v) or "none" for r in runs]
    lines.append("| checks FAILED | " + " | ".join(checks) + " | | | |")
    return [*lines, ""]


def extras_markdown(results: Mapping[str, Result]) -> str:
    """The soak and big-group sections (empty when neither was run into this directory)."""
    lines: list[str] = []
    soak = results.get("soak")
    if soak:
        lines += [
            f"### `writeback run` soak ({soak.get('size')}, {_num(soak.get('minutes'), 1)} min, {soak.get('date')})",
            "",
            "| | |",
            "|---|---:|",
            f"| samples of /proc/<pid>/status (every {_num(soak.get('sample_interval_s'), 0)} s) | {_num(len(soak.get('samples') or []))} |",
            f"| peak RSS, whole life incl. startup (VmHWM, MB) | {_num(soak.get('peak_hwm_mb'), 0)} |",
            f"| peak RSS after the first cycle (max VmRSS, MB) | {_num(soak.get('peak_rss_after_first_cycle_mb'), 0)} |",
            f"| RSS at the end (VmRSS, MB) | {_num(soak.get('end_rss_mb'), 0)} |",
            f"| RSS 10 min after start / at the end (MB) | {_num(soak.get('rss_at_10min_mb'), 0)} / {_num(soak.get('end_rss_mb'), 0)} |",
            f"| membership changes made (through Graph) | {_num(soak.get('changes'))} |",
            f"| members exact in AD at the end | {_num(_get(soak, 'checks', 'members_exact_at_end'))} |",
            f"| goal: {_cell_text(_get(soak, 'target', 'goal'))} | {_goal_cell(_get(soak, 'target'))} |",
            f"| Run stopped by | {_cell_text(soak.get('error')) or '-'} |",
            "",
        ]
    big = results.get("biggroup")
    if big:
        lines += [
            f"### Big group ({big.get('date')})",
            "",
            "| members | first apply (s) | peak RSS (MB) | LDAP | 1 change (s; modifies) | "
            "1,000 changes (s; modifies, min) | no change (s; writes) | exact |",
            "|---:|---:|---:|---|---|---|---|---|",
        ]
        for step in big.get("sizes", []):
            one = step.get("change_1") or {}
            thousand = step.get("change_1000") or {}
            none = step.get("no_change") or {}
            first = step.get("first_apply") or {}
            exact = all((step.get("checks") or {}).values()) if step.get("checks") else None
            lines.append(
                f"| {_num(step.get('members'))} | {_num(first.get('wall_s'))} | "
                f"{_num(first.get('max_rss_mb'), 0)} | {_ops(first.get('ldap'))} | "
                f"{_num(one.get('wall_s'), 2)}; {_num(_get(one, 'ldap', 'modify'))} | "
                f"{_num(thousand.get('wall_s'), 2)}; {_num(_get(thousand, 'ldap', 'modify'))}, {_num(thousand.get('minimal_modifies'))} | "
                f"{_num(none.get('wall_s'), 2)}; {_num(none.get('writes'))} | {_num(exact)} |"
            )
        seed = big.get("seed") or {}
        if seed.get("seconds") is not None:
            lines += [
                "",
                f"Seeding: {_num(seed.get('users_added'))} users added over LDAP in {_num(seed.get('seconds'))} s "
                f"({_num(seed.get('users_needed'))} needed).",
            ]
        estimate = big.get("estimate_500k")
        if estimate:
            lines += ["", f"500,000 members: {_cell_text(estimate.get('text'), 1000)}"]
        if big.get("error"):
            lines += ["", f"Run stopped by: {_cell_text(big.get('error'))}"]
        lines.append("")
    lines += users_report.users_markdown(results)
    return "\n".join(lines) + ("\n" if lines else "")


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
    if any(n in results for n in ORDER):
        plot(results, out / "bench.png")
    return table
