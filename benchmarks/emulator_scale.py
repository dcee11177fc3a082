"""Scale check of the Graph emulator: 100,000 users, 10,000 groups, 1,000,000 memberships.

Generates the tenant in memory, serves it over HTTPS (background thread, same process), walks a full
``/v1.0/users/delta`` and ``/v1.0/groups/delta?$select=…,members`` with httpx, checks that every
membership arrived, and prints timings and the process's peak RSS (server + client + tenant).

    .venv/bin/python benchmarks/emulator_scale.py [--users N] [--groups N] [--memberships N]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from writeback.testbed.emulator.tenant import Tenant
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator

DEPARTMENTS = ("Sales", "HR", "IT", "Finance", "Marketing", "Legal", "Support", "R&D")


def generate(users: int, groups: int, memberships: int, seed: int = 42) -> dict[str, Any]:
    """A tenant-file dict: synced-looking users, security groups, a few very big groups."""
    rng = random.Random(seed)
    user_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    user_list = [
        {
            "id": uid,
            "userPrincipalName": f"user{i}@corp.example.test",
            "displayName": f"User {i}",
            "accountEnabled": True,
            "department": DEPARTMENTS[i % len(DEPARTMENTS)],
            "jobTitle": "Engineer",
            "mail": f"user{i}@corp.example.test",
            "onPremisesSyncEnabled": True,
            "onPremisesSecurityIdentifier": f"S-1-5-21-1-2-3-{1000 + i}",
            "onPremisesSamAccountName": f"user{i}",
        }
        for i, uid in enumerate(user_ids)
    ]
    big = min(10, groups)
    big_size = min(20_000, users)
    remaining = max(memberships - big * big_size, 0)
    small_size = remaining // max(groups - big, 1)
    group_list = []
    for g in range(groups):
        size = big_size if g < big else small_size
        members = rng.sample(user_ids, size) if size else []
        group_list.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "displayName": f"Group {g}",
                "description": "benchmark group",
                "mailNickname": f"group{g}",
                "mailEnabled": False,
                "securityEnabled": True,
                "groupTypes": [],
                "members": members,
            }
        )
    return {
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "apps": [{"client_id": "bench", "client_secret": "bench-secret"}],
        "users": user_list,
        "groups": group_list,
    }


def walk(client: httpx.Client, handle: EmulatorHandle, url: str) -> tuple[int, int, dict[str, set[str]]]:
    """Follow nextLinks to the deltaLink; return (pages, entries, members merged per group)."""
    headers = {"Authorization": f"Bearer {handle.token()}"}
    pages = entries = 0
    members: dict[str, set[str]] = {}
    while True:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        body = response.json()
        pages += 1
        for item in body["value"]:
            entries += 1
            bucket = members.setdefault(item["id"], set())
            for ref in item.get("members@delta", ()):
                bucket.add(ref["id"])
        if "@odata.deltaLink" in body:
            return pages, entries, members
        url = body["@odata.nextLink"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--memberships", type=int, default=1_000_000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = generate(args.users, args.groups, args.memberships)
    expected = sum(len(g["members"]) for g in data["groups"])
    t1 = time.perf_counter()
    tenant = Tenant.from_dict(data, copy=False)
    del data
    t2 = time.perf_counter()
    print(f"generated {args.users} users, {args.groups} groups, {expected} memberships in {t1 - t0:.1f} s")
    print(f"tenant loaded in {t2 - t1:.1f} s")
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_emulator(tenant, Path(tmp)) as handle,
        httpx.Client(verify=handle.ssl_context(), timeout=120) as client,
    ):
        t3 = time.perf_counter()
        pages, entries, _ = walk(
            client, handle, f"{handle.graph_url}/v1.0/users/delta?$select=id,displayName"
        )
        t4 = time.perf_counter()
        print(f"users delta: {pages} pages, {entries} objects in {t4 - t3:.1f} s")
        select = "displayName,description,mailEnabled,securityEnabled,groupTypes,members"
        pages, entries, members = walk(
            client, handle, f"{handle.graph_url}/v1.0/groups/delta?$select={select}"
        )
        t5 = time.perf_counter()
        got = sum(len(m) for m in members.values())
        print(
            f"groups delta: {pages} pages, {entries} entries, {len(members)} groups, "
            f"{got} memberships in {t5 - t4:.1f} s"
        )
        if got != expected or len(members) != args.groups:
            raise SystemExit(f"MISMATCH: expected {expected} memberships in {args.groups} groups")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB (server, client and tenant in one process)")


if __name__ == "__main__":
    main()
