"""The figures of ``scripts/bench users`` (pure): its ratios and its section of ``bench.md``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Result = Mapping[str, Any]
SIZES = ("small", "medium", "large")
FILES = tuple(f"users-{n}" for n in SIZES)  # bench-users-<size>.json, next to bench-<size>.json


def ratios(engine_wall_s: float, engine_apply_phase_s: float, limit_s: float) -> dict[str, float | None]:
    """``ratio_users_engine_limit`` (the first apply's wall time, interpreter start included, over the
    limit's) and ``ratio_users_apply_phase_limit`` (its write phase alone over the limit's); None when the
    limit took no measurable time."""
    if limit_s <= 0:
        return {"ratio_users_engine_limit": None, "ratio_users_apply_phase_limit": None}
    return {
        "ratio_users_engine_limit": round(engine_wall_s / limit_s, 2),
        "ratio_users_apply_phase_limit": round(engine_apply_phase_s / limit_s, 2),
    }


def _get(result: Result, *keys: str) -> Any:
    value: Any = result
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
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


def _ops(ldap: Mapping[str, int] | None) -> str:
    kinds = ("add", "modify", "modrdn", "delete", "search", "bind")
    return ", ".join(f"{ldap[k]:,} {k}" for k in kinds if ldap.get(k)) if ldap else "-"


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "/")[:300] if text else ""


def _host(result: Result, when: str) -> str:
    found = _get(result, "host_check", when)
    return f"{_num(found.get('cpu_ms'), 0)}; {_num(found.get('ldap_ms'), 0)}" if found else "-"


def markdown(result: Result) -> str:
    """The section of one users run: what each side wrote, its time, and the ratios."""
    first = _get(result, "first_apply") or {}
    phases = first.get("phases_s") or {}
    timings = first.get("timings_s") or {}
    tenant = result.get("tenant") or {}
    checks = result.get("checks") or {}
    rows = [
        (
            "Cloud-only members / groups / memberships",
            " / ".join(_num(tenant.get(k)) for k in ("cloud_only_members", "groups", "memberships")),
        ),
        ('**First apply** (engine, `provision = "cloud_members"`): wall (s)', _num(first.get("wall_s"))),
        ("  sync / plan / apply (s)", " / ".join(_num(phases.get(p)) for p in ("sync", "plan", "apply"))),
        (
            "  Graph read / planning / AD read / AD write (s)",
            " / ".join(_num(timings.get(p), 2) for p in ("graph_read", "planning", "ad_read", "ad_write")),
        ),
        (
            "  engine CPU (s) / peak RSS (MB)",
            f"{_num(first.get('cpu_s'))} / {_num(first.get('max_rss_mb'), 0)}",
        ),
        ("  LDAP operations", _ops(first.get("ldap"))),
        (
            "  Graph requests (client / emulator)",
            f"{_num(first.get('graph_requests'))} / {_num(first.get('emulator_requests'))}",
        ),
        ("**Limit** (minimal python-ldap): wall (s)", _num(_get(result, "limit", "wall_s"))),
        ("  LDAP operations", _ops(_get(result, "limit", "ldap"))),
        (
            "  accounts (each with a password) / groups / member values",
            " / ".join(_num(_get(result, "limit", k)) for k in ("accounts", "groups", "values")),
        ),
        (
            "**Engine / limit** (whole apply; write phase)",
            f"{_num(result.get('ratio_users_engine_limit'), 2)}; {_num(result.get('ratio_users_apply_phase_limit'), 2)}",
        ),
        (
            "  host check before apply / limit: CPU; LDAP (ms)",
            f"{_host(result, 'first_apply')} / {_host(result, 'limit')}",
        ),
        (
            "**Second apply**, no change: wall (s) / writes (must be 0)",
            f"{_num(_get(result, 'second_apply', 'wall_s'), 2)} / {_num(_get(result, 'second_apply', 'writes'))}",
        ),
        ("Checks passed", ", ".join(k for k, v in checks.items() if v) or "-"),
        ("Run stopped by", _one_line(result.get("error")) or "-"),
        ("Checks FAILED", ", ".join(k for k, v in checks.items() if not v) or "none"),
    ]
    lines = [
        f"### Users: accounts for cloud-only members ({result.get('size')}, {result.get('date')})",
        "",
        "| | |",
        "|---|---:|",
        *(f"| {label} | {cell} |" for label, cell in rows),
        "",
    ]
    return "\n".join(lines)


def users_markdown(results: Mapping[str, Result]) -> list[str]:
    """The users sections of every size run into this results directory (``users-<size>`` keys)."""
    return [markdown(results[name]) for name in FILES if name in results]
