"""The Graph read alone, N requests in flight: what a concurrent first read can gain against a Graph profile.

``python -m benchmarks.bench.read_concurrency SPEC.json`` is the child (its own process, so its CPU never
competes with the emulator thread of the benchmark process for one interpreter): it takes a token, then for
each N in the spec enumerates the groups (``/groups?$select=id&$top=999``, page after page) and reads every
group's direct members (``/groups/{id}/members?$select=id&$top=999``, following each group's nextLinks) with
at most N requests in flight, and prints one JSON object per N: seconds (enumeration included), requests, 429s,
member references read. A 429 (or 503) waits its Retry-After in that task and asks again; the others go on.
Nothing is kept but counts: this measures reading, not what a client does with it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench.workspace import ROOT, Workspace, child_env
from writeback.testbed.emulator.testing import EmulatorHandle

GROUPS = "/v1.0/groups?$select=id&$top=999"
MEMBERS = "/v1.0/groups/{}/members?$select=id&$top=999"
MAX_RETRIES = 50


class _Reader:
    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.requests = 0
        self.throttled = 0

    async def page(self, url: str) -> dict[str, Any]:
        for _ in range(MAX_RETRIES):
            self.requests += 1
            response = await self.client.get(url, headers=self.headers)
            if response.status_code in (429, 503):
                self.throttled += 1
                await asyncio.sleep(float(response.headers.get("Retry-After") or 1))
                continue
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        raise RuntimeError(f"refused {MAX_RETRIES} times: {url}")

    async def walk(self, url: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url is not None:
            body = await self.page(next_url)
            items.extend(body.get("value") or [])
            next_url = body.get("@odata.nextLink")
        return items


async def measure_one(spec: dict[str, Any], token: str, concurrency: int) -> dict[str, Any]:
    verify = ssl.create_default_context(cafile=spec["ca_file"])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=spec["graph_url"], verify=verify, limits=limits, timeout=600.0
    ) as client:
        reader = _Reader(client, {"Authorization": f"Bearer {token}"})
        started = time.perf_counter()
        groups = [str(g["id"]) for g in await reader.walk(GROUPS)]
        queue = list(reversed(groups))
        refs = 0

        async def worker() -> None:  # N workers: at most N requests in flight
            nonlocal refs
            while queue:
                group = queue.pop()
                members = await reader.walk(MEMBERS.format(group))
                refs += len(members)  # not `refs += len(await ...)`: that reads refs before awaiting

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "groups": len(groups),
        "requests": reader.requests,
        "throttled": reader.throttled,
        "member_refs": refs,
    }


def _token(spec: dict[str, Any]) -> str:
    verify = ssl.create_default_context(cafile=spec["ca_file"])
    secret = Path(spec["client_secret_file"]).read_text(encoding="utf-8").strip()
    with httpx.Client(base_url=spec["graph_url"], verify=verify, timeout=60.0) as client:
        response = client.post(
            f"/{spec['tenant_id']}/oauth2/v2.0/token",
            data={
                "client_id": spec["client_id"],
                "client_secret": secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def measure(
    workspace: Workspace,
    handle: EmulatorHandle,
    concurrencies: Sequence[int],
    timeout: float = 7200.0,
) -> list[dict[str, Any]]:
    """Run the child for each N in ``concurrencies``; one result per N. The emulator's budget is reset before
    each N, so no run starts in debt for the one before (Graph's window is 10 s; a pause would do the same)."""
    results = []
    for n in concurrencies:
        handle.admin("profile", {"reset_budget": True})
        spec = {
            "graph_url": handle.graph_url,
            "tenant_id": handle.tenant_id,
            "client_id": handle.client_id,
            "client_secret_file": str(workspace.dir / "client_secret"),
            "ca_file": handle.ca_file,
            "concurrency": n,
        }
        path = workspace.dir / "read-concurrency.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        argv = [sys.executable, "-m", "benchmarks.bench.read_concurrency", str(path)]
        proc = subprocess.run(
            argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"the concurrent Graph read ({n} in flight) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        results.append(json.loads(lines[-1]))
    handle.admin("profile", {"reset_budget": True})
    return results


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    token = _token(spec)
    print(json.dumps(asyncio.run(measure_one(spec, token, int(spec["concurrency"])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
