"""Dynamic-rule evaluation throughput, with the users and rules of benchmarks/rules_eval.py."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.rules_eval import RULES, synthetic_users
from writeback.core.rules import RuleContext, compile_rule


def measure(users: int) -> dict[str, Any]:
    """Users per second of each rule of rules_eval over ``users`` synthetic users, and their median."""
    population = synthetic_users(users)
    context = RuleContext(now=datetime(2025, 6, 1, tzinfo=UTC))
    per_rule: dict[str, float] = {}
    total = 0.0
    for label, text in RULES.items():
        rule = compile_rule(text)
        started = time.perf_counter()
        rule.filter(population, context)
        elapsed = time.perf_counter() - started
        total += elapsed
        per_rule[label] = users / elapsed if elapsed else float("inf")
    return {
        "users": users,
        "rules": len(per_rule),
        "median_users_per_s": statistics.median(per_rule.values()),
        "slowest_users_per_s": min(per_rule.values()),
        "seconds_all_rules": total,
        "per_rule_users_per_s": {k: round(v) for k, v in per_rule.items()},
    }
