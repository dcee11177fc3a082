"""Which instance is active: ``role``, the lease holder and its end on ``/api/status`` and the status page, and
the ``writeback_leader`` gauge, with a SQLite state (no lease) and with the leader lease (run here on one SQLite
file, as the HA tests run it on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from tests.unit.test_console import Console, make_console
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.lease import LeaderLease, describe_instance
from writeback.app.metrics import ServiceMetrics
from writeback.app.service import Health


def _leader(console: Console) -> float:
    text = console.client.get("/metrics", headers=console.bearer(console.viewer)).text
    found = re.search(r"^writeback_leader (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def _status(console: Console) -> dict[str, Any]:
    r = console.client.get("/api/status", headers=console.bearer(console.viewer))
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def _facts(page: str) -> dict[str, str]:
    """The status page's facts as {term: text}."""
    blocks = re.findall(r'<dl class="facts"[^>]*>(.*?)</dl>', page, re.S)
    assert blocks, "the status page has no facts"
    pairs = re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", "".join(blocks), re.S)
    return {term: re.sub(r"<[^>]+>", "", value).strip() for term, value in pairs}


def test_with_a_sqlite_state_this_instance_is_active_while_it_runs_and_stopped_after(tmp_path: Path) -> None:
    console = make_console(tmp_path)
    me = f"{socket.gethostname()}:{os.getpid()}"
    status = _status(console)
    assert status["role"] == "active" and status["instance"] == me
    # The holder is this instance (its writer lock); a lock has no end, so no expiry.
    assert status["holder"] == {
        "instance": me,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": None,
    }
    assert status["leaseExpires"] is None and status["leaseCheckedAt"] is None
    assert _leader(console) == 1.0
    console.sign_in(console.viewer)
    facts = _facts(console.client.get("/").text)
    assert facts["Role"] == "active" and facts["Active instance"] == f"{me} (this one)"
    assert facts["Lease ends"].startswith("no lease (SQLite state")

    console.service.run(once=True)  # one cycle, then stopped
    assert console.service.health.lease_holder == me  # the health file says the same
    status = _status(console)
    assert status["role"] == "stopped" and status["holder"] is None and status["leaseExpires"] is None
    assert _leader(console) == 0.0
    facts = _facts(console.client.get("/").text)
    assert facts["Role"] == "stopped" and facts["Active instance"] == "none known"


def test_a_standby_names_the_active_instance_and_when_its_lease_ends_then_takes_over(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    other = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5, holder="web1:4242:0badcafe")
    assert other.tick()
    lease = LeaderLease(SqliteStore(state), ttl=30, renew_interval=5)
    console = make_console(tmp_path, lease)
    try:
        asked = time.time()
        assert not lease.tick()
        # The console reads the lease itself: standing by before the service loop has looked at it again.
        assert console.service.health.role == "active" and _status(console)["role"] == "standby"
        assert not console.service._lead()  # the service loop stands by

        status = _status(console)
        assert status["role"] == "standby"
        assert status["instance"] == lease.holder != other.holder
        assert status["holder"] == {"instance": other.holder, "host": "web1", "pid": 4242, "token": 1}
        expires = dt.datetime.fromisoformat(status["leaseExpires"])
        assert expires.utcoffset() == dt.timedelta(0)  # ISO 8601 in UTC
        assert asked + 30 - 2 <= expires.timestamp() <= time.time() + 30  # ttl 30 s, whole seconds
        assert dt.datetime.fromisoformat(status["leaseCheckedAt"]).timestamp() >= int(asked)
        h = console.service.health  # the health file says who is active too
        assert (h.role, h.instance, h.lease_holder) == ("standby", lease.holder, other.holder)
        assert h.lease_expires is not None and abs(h.lease_expires - expires.timestamp()) < 1.5
        assert _leader(console) == 0.0
        console.sign_in(console.viewer)
        page = console.client.get("/").text
        facts = _facts(page)
        assert facts["Role"] == "standby"
        assert facts["Active instance"] == f"{other.holder}, fencing token 1"  # not "(this one)"
        # A human time ("in 29 s"), with the instant in the <time> element's datetime.
        assert re.fullmatch(r"in \d+ s unless renewed", facts["Lease ends"])
        assert f'<time datetime="{expires:%Y-%m-%dT%H:%M:%S}Z"' in page

        # The active instance stops cleanly (releases the lease): this one takes over and names itself.
        other.stop(release=True)
        assert lease.tick()
        assert console.service._lead()
        status = _status(console)
        assert status["role"] == "active"
        assert status["holder"] == {**describe_instance(lease.holder), "token": 2}
        assert status["holder"]["pid"] == os.getpid() and status["holder"]["host"] == socket.gethostname()
        assert dt.datetime.fromisoformat(status["leaseExpires"]).timestamp() > time.time() + 25
        assert _leader(console) == 1.0
        assert _facts(console.client.get("/").text)["Active instance"].endswith("(this one), fencing token 2")
    finally:
        other.store.close()
        lease.store.close()


def test_a_deposed_holder_learns_who_took_the_lease_and_says_stopped_after_stop(tmp_path: Path) -> None:
    a = LeaderLease(SqliteStore(tmp_path / "state.sqlite"), ttl=0.3, renew_interval=0.1, holder="a:1:aa")
    b = LeaderLease(SqliteStore(tmp_path / "state.sqlite"), ttl=30, renew_interval=5, holder="b:2:bb")
    try:
        assert a.tick() and a.current is not None and (a.current.holder, a.current.token) == ("a:1:aa", 1)
        time.sleep(0.4)  # a stops renewing: its lease runs out, b takes it
        assert b.tick() and b.current is not None and b.current.holder == "b:2:bb"
        assert not a.tick()
        assert a.role == "standby" and a.current is not None
        assert (a.current.holder, a.current.token) == ("b:2:bb", 2)
        assert a.current.expires > time.time() + 25
        a.stop(release=False)
        assert a.role == "stopped"
    finally:
        a.store.close()
        b.store.close()


def test_the_leader_gauge_follows_the_health() -> None:
    for role, status, value in (
        ("active", "ok", 1.0),
        ("active", "starting", 1.0),
        ("standby", "standby", 0.0),
        ("active", "stopped", 0.0),
    ):
        health = Health(role=role, status=status)
        text = ServiceMetrics(functools.partial(lambda h: h, health)).render().decode()
        assert f"writeback_leader {value}" in text, (role, status)


def test_instance_ids_are_described_by_their_parts() -> None:
    assert describe_instance("web1.corp:4242:0badcafe") == {
        "instance": "web1.corp:4242:0badcafe",
        "host": "web1.corp",
        "pid": 4242,
    }
    assert describe_instance("web1:17") == {"instance": "web1:17", "host": "web1", "pid": 17}
    assert describe_instance("something else") == {"instance": "something else", "host": None, "pid": None}
