"""Throughput of compiled dynamic membership rules over synthetic users.

Run: ``.venv/bin/python benchmarks/rules_eval.py [--users 100000]``. Prints users/s per rule; the target is a
typical rule over 100,000 users in well under a second on one core.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from writeback.core.rules import RuleContext, compile_rule

DEPARTMENTS = ["Sales", "Marketing", "HR", "Engineering", "Accounts", "Legal", None]
CITIES = ["Lagos", "Ibadan", "Kaduna", "Abuja", "Port Harcourt", "Seattle", "Dublin", None]
PLANS = [
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
    "c1ec4a95-0000-0000-0000-000000000000",
]

RULES = {
    "single -eq": 'user.department -eq "Sales"',
    "and of two": 'user.department -eq "Sales" -and user.accountEnabled -eq true',
    "in list": 'user.department -eq "Accounts" -and user.city -in ["Lagos", "Ibadan", "Kaduna", "Abuja", "Port Harcourt"]',
    "or + not": '(user.department -eq "Sales") -or (user.department -eq "Marketing") -and -not (user.jobTitle -startsWith "SDE")',
    "match": 'user.displayName -match "^Da.*"',
    "extension attribute": 'user.extensionAttribute15 -eq "Marketing"',
    "string collection": 'user.proxyAddresses -any (_ -startsWith "smtp:a")',
    "object collection": (
        'user.assignedPlans -any (assignedPlan.servicePlanId -eq "efb87545-963c-4e0d-99df-69c6916d9eb0" '
        '-and assignedPlan.capabilityStatus -eq "Enabled")'
    ),
    "hire date": "user.employeeHireDate -ge system.now -plus -p30d",
    "all users": '(user.objectId -ne null) -and (user.userType -eq "Member")',
}


def synthetic_users(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Graph-shaped user dicts with a realistic spread of values (and some nulls)."""
    rng = random.Random(seed)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    users = []
    for i in range(count):
        name = rng.choice(["David", "Dana", "Ada", "Bola", "Chen", "Eve"]) + f" {i}"
        users.append(
            {
                "id": f"{i:08x}-0000-0000-0000-000000000000",
                "displayName": name,
                "department": rng.choice(DEPARTMENTS),
                "city": rng.choice(CITIES),
                "jobTitle": rng.choice(["SDE II", "Manager", "Analyst", None]),
                "accountEnabled": rng.random() < 0.9,
                "userType": "Member" if rng.random() < 0.95 else "Guest",
                "proxyAddresses": [
                    f"SMTP:{name.split()[0].lower()}{i}@contoso.com",
                    f"smtp:alias{i}@contoso.com",
                ],
                "onPremisesExtensionAttributes": {"extensionAttribute15": rng.choice(["Marketing", None])},
                "assignedPlans": [
                    {"servicePlanId": rng.choice(PLANS), "service": "exchange", "capabilityStatus": "Enabled"}
                    for _ in range(rng.randint(0, 3))
                ],
                "employeeHireDate": (start + timedelta(days=rng.randint(0, 2000)))
                .isoformat()
                .replace("+00:00", "Z"),
            }
        )
    return users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    users = synthetic_users(args.users)
    context = RuleContext(now=datetime(2025, 6, 1, tzinfo=UTC))
    print(f"{'rule':<22} {'matched':>8} {'seconds':>8} {'users/s':>12}")
    for label, text in RULES.items():
        rule = compile_rule(text)
        started = time.perf_counter()
        matched = rule.filter(users, context)
        elapsed = time.perf_counter() - started
        print(f"{label:<22} {len(matched):>8} {elapsed:>8.3f} {args.users / elapsed:>12,.0f}")


if __name__ == "__main__":
    main()
