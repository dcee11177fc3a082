"""The concurrent first read end to end (issue 27): `writeback apply` with ``source.max_in_flight = 8`` writes
exactly the AD that the sequential read (``max_in_flight = 1``, one full delta round) writes."""

from __future__ import annotations

from typing import Any

import httpx


def in_flight(ws: Any, n: int) -> Any:
    text = ws.config.read_text()
    ws.config.write_text(text.replace("max_retries = 3\n", f"max_retries = 3\nmax_in_flight = {n}\n", 1))
    return ws


def member_reads(cloud: Any) -> int:
    admin = {"Authorization": f"Bearer {cloud.info.emulator_admin_token}"}
    r = cloud.http.get("/_emulator/stats", headers=admin)
    assert r.status_code == httpx.codes.OK, r.text
    counts = r.json()["requests"]
    # Member pages read alone, and JSON batches carrying them 20 at a time (a POST: the emulator's statistics
    # count it with the writes; writeback itself never writes to Graph).
    return int(counts.get("members", 0)) + int(counts.get("write", 0))


def written(ad: Any, ids: list[str]) -> dict[str, Any]:
    """What AD holds of the groups, but what differs between two creates of the same group (GUID, USNs)."""
    out: dict[str, Any] = {}
    for gid in ids:
        g = ad.anchored(gid)
        assert g is not None, f"no AD group for {gid}"
        out[gid] = {
            k: sorted(v) if isinstance(v, list) else v
            for k, v in g.items()
            if k not in ("objectGUID", "uSNChanged")
        }
    return out


def test_a_concurrent_first_sync_writes_exactly_what_the_sequential_one_writes(
    cloud: Any, workspace: Any, ad: Any, ldap_conn: Any, fresh_id: str
) -> None:
    users = cloud.synced_users()[:6]
    child = cloud.create_group(f"FR Child {fresh_id}", [u["id"] for u in users[4:6]])
    parent = cloud.create_group(f"FR Parent {fresh_id}", [*(u["id"] for u in users[:3]), child])
    other = cloud.create_group(f"FR Other {fresh_id}", [u["id"] for u in users[1:5]])
    ids = [parent, child, other]

    before_reads = member_reads(cloud)
    sequential = in_flight(workspace(ids), 1)
    applied = sequential.run("apply")
    assert applied.code == 0, applied.out + applied.err
    assert member_reads(cloud) == before_reads, "the sequential read reads members through delta only"
    reference = written(ad, ids)
    assert len(reference[parent]["member"]) == 4  # three users and the nested child

    # The same first sync again, concurrent, from a fresh state onto an OU without those groups.
    for gid in (parent, child, other):
        ldap_conn.delete_s(ad.anchored(gid)["dn"])
    concurrent = in_flight(workspace(ids), 8)
    applied = concurrent.run("apply")
    assert applied.code == 0, applied.out + applied.err
    assert member_reads(cloud) > before_reads, "the concurrent read lists each group's members (in batches)"
    assert written(ad, ids) == reference
    assert concurrent.run("plan").code == 0  # nothing left to do
    # And the sequential installation sees nothing to change in what the concurrent one wrote.
    assert sequential.run("plan").code == 0
