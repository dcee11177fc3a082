"""The end-to-end limit: the whole job done by a minimal sequential script, against the same emulator profile.

What the engine does, with nothing else: one full delta read of the users (``id`` and
``onPremisesSecurityIdentifier``) and of the groups with their members (``$select=id,members``), with plain
httpx following every ``@odata.nextLink``, one request at a time (a 429 waits its ``Retry-After``); then one
paged LDAP search that maps the users' SIDs to DNs (the AD read); then the directory's limit
(:func:`benchmarks.bench.limit.write_limit`: one add per group with its first 5,000 members, one modify per
further 5,000, children first). The group attributes other than ``member`` are the engine's own (read back
from AD after the first apply): a handful of short values per group, computed from properties the read
already has, so taking them costs the script nothing it would otherwise pay.

The read runs right after the engine's first apply, so both see the same tenant; the AD read and the writes
run where the directory's limit always ran, on the directory restored to its seeded state. Each part is timed
on its own and the limit is their sum, which is what a script running them back to back would take: nothing
else runs during either part.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.bench import limit
from benchmarks.bench.ldaptools import USER_FILTER, GroupEntry, connection
from writeback.testbed.emulator.testing import EmulatorHandle
from writeback.testbed.sandbox import SandboxInfo
from writeback.testbed.sandbox.seed import paged_search, sid_to_str

USERS_DELTA = "/v1.0/users/delta?$select=id,onPremisesSecurityIdentifier"
GROUPS_DELTA = "/v1.0/groups/delta?$select=id,members"
MAX_RETRIES = 20


@dataclass
class GraphRead:
    """The tenant as one sequential delta read saw it, and what the read cost."""

    seconds: float
    requests: int
    throttled: int
    user_sids: dict[str, str]  # cloud user id -> onPremisesSecurityIdentifier (synced users only)
    members: dict[str, set[str]] = field(default_factory=dict)  # group id -> member ids


def _get(
    client: httpx.Client, url: str, headers: Mapping[str, str], counts: dict[str, int]
) -> dict[str, Any]:
    """One page; a 429 or 503 waits its Retry-After (1 s without one) and asks again."""
    for _ in range(MAX_RETRIES):
        counts["requests"] += 1
        response = client.get(url, headers=headers)
        if response.status_code in (429, 503):
            counts["throttled"] += 1
            time.sleep(float(response.headers.get("Retry-After") or 1))
            continue
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        return page
    raise RuntimeError(f"the end-to-end limit's Graph read was refused {MAX_RETRIES} times at {url}")


def _walk(
    client: httpx.Client, url: str, headers: Mapping[str, str], counts: dict[str, int]
) -> list[dict[str, Any]]:
    """Every object of a delta round, page after page."""
    objects: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url is not None:
        page = _get(client, next_url, headers, counts)
        objects.extend(page.get("value") or [])
        next_url = page.get("@odata.nextLink")
    return objects


def read_graph(handle: EmulatorHandle) -> GraphRead:
    """The sequential full read, timed from the token request to the last page."""
    counts = {"requests": 0, "throttled": 0}
    with httpx.Client(base_url=handle.graph_url, verify=handle.ssl_context(), timeout=300.0) as client:
        started = time.perf_counter()
        token = client.post(
            f"/{handle.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": handle.client_id,
                "client_secret": handle.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        user_sids: dict[str, str] = {}
        for user in _walk(client, USERS_DELTA, headers, counts):
            sid = user.get("onPremisesSecurityIdentifier")
            if "@removed" not in user and sid:
                user_sids[str(user["id"])] = str(sid)
        members: dict[str, set[str]] = {}
        # A big group comes in slices over several pages, in any order: merge.
        for group in _walk(client, GROUPS_DELTA, headers, counts):
            if "@removed" in group:
                members.pop(str(group["id"]), None)
                continue
            held = members.setdefault(str(group["id"]), set())
            for ref in group.get("members@delta") or []:
                if "@removed" in ref:
                    held.discard(str(ref["id"]))
                else:
                    held.add(str(ref["id"]))
        seconds = time.perf_counter() - started
    return GraphRead(seconds, counts["requests"], counts["throttled"], user_sids, members)


@dataclass
class EndToEndLimit:
    graph_read_s: float
    ad_read_s: float
    build_s: float
    ad_write_s: float
    graph_requests: int
    throttled: int
    writes: limit.LimitResult

    @property
    def seconds(self) -> float:
        return self.graph_read_s + self.ad_read_s + self.build_s + self.ad_write_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.seconds, 3),
            "graph_read_s": round(self.graph_read_s, 3),
            "ad_read_s": round(self.ad_read_s, 3),
            "build_s": round(self.build_s, 3),
            "ad_write_s": round(self.ad_write_s, 3),
            "graph_requests": self.graph_requests,
            "graph_throttled": self.throttled,
            "ldap": self.writes.operations,
            "values": self.writes.values,
        }


def sid_dns(info: SandboxInfo) -> dict[str, str]:
    """objectSid (string form) -> DN of every user in the domain: the script's one AD read."""
    with connection(info) as conn:
        return {
            sid_to_str(entry["objectSid"][0]): dn
            for dn, entry in paged_search(conn, info.base_dn, USER_FILTER, ["objectSid"])
            if entry.get("objectSid")
        }


def build_groups(
    read: GraphRead, sids: Mapping[str, str], engine_groups: Sequence[GroupEntry]
) -> list[GroupEntry]:
    """The groups to write: the engine's DN and attributes for each group, the members from the read
    (synced users by SID, nested groups by their DN; cloud-only users have no AD twin and are skipped)."""
    by_id = {(g.anchor or "").split("_", 1)[-1]: g for g in engine_groups}
    out = []
    for gid, member_ids in read.members.items():
        group = by_id.get(gid)
        if group is None:
            continue  # not in the engine's scope
        dns = []
        for member in member_ids:
            sid = read.user_sids.get(member)
            if sid is not None:
                if sid in sids:
                    dns.append(sids[sid])
            elif member in by_id:
                dns.append(by_id[member].dn)
        out.append(GroupEntry(group.dn, group.attributes, dns))
    return out


def write_part(
    info: SandboxInfo,
    read: GraphRead,
    engine_groups: Sequence[GroupEntry],
    source_base: str,
    target_base: str,
) -> EndToEndLimit:
    """The AD read and the minimal writes (into ``target_base``), each timed; with ``read``'s figures."""
    started = time.perf_counter()
    sids = sid_dns(info)
    ad_read = time.perf_counter() - started
    started = time.perf_counter()
    groups = build_groups(read, sids, engine_groups)
    build = time.perf_counter() - started
    started = time.perf_counter()
    writes = limit.write_limit(info, groups, source_base, target_base)
    ad_write = time.perf_counter() - started  # the connection's bind included: the script pays it
    return EndToEndLimit(read.seconds, ad_read, build, ad_write, read.requests, read.throttled, writes)
