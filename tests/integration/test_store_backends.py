"""Both state backends against real servers: a SQLite file and the test bed's PostgreSQL.

The store tests shared by both backends live with the unit tests (tests/unit/test_replica_snapshot.py,
test_state_errors.py, parametrized over SQLite and PostgreSQL); here is what needs more than one connection,
a server that goes away, or the CLI: the leader lease and its fencing token, concurrent migrations, a
connection that comes back after a server restart, `writeback state migrate`, and messages without the
password.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from tests.testbed.fixtures import PostgresServer, without_password
from tests.testbed.stores import BACKENDS, another_connection, open_store

from writeback.adapters.state import sqlbase
from writeback.adapters.state.leases import session_name
from writeback.adapters.state.postgres import PostgresStore
from writeback.adapters.state.schema import LOG_ACTOR_VERSION, MIGRATIONS
from writeback.adapters.state.sqlbase import ALL_TABLES, LogQuery
from writeback.adapters.state.sqlite import SqliteStore
from writeback.app.lease import LeaderLease
from writeback.core.model import CloudGroup, CloudUser, MemberRef
from writeback.core.ports import LogRecord
from writeback.errors import LeaseLostError, StateError, StateSchemaError, StateUnavailableError

pytestmark = [pytest.mark.postgres]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_holder_at_a_time_and_the_fencing_token_only_grows(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    a_store = open_store(request, tmp_path, backend)
    b_store = another_connection(a_store, tmp_path)
    a = LeaderLease(a_store, ttl=1.5, renew_interval=0.5, holder="a")
    b = LeaderLease(b_store, ttl=1.5, renew_interval=0.5, holder="b")
    assert a.tick() and a.role == "active"
    first = a.token
    assert not b.tick() and b.role == "standby"
    assert "a is active" in b.reason
    assert a.tick() and a.token == first  # renewed in time: the same token
    a.guard()  # holds: no exception
    time.sleep(1.7)  # a stops renewing (paused): its lease runs out
    with pytest.raises(LeaseLostError):
        a.guard()
    assert b.tick() and b.token is not None and first is not None and b.token > first
    b.guard()
    assert not a.tick() and a.role == "standby"  # the paused one wakes up: standing by
    with pytest.raises(LeaseLostError):
        a.guard()
    b.stop(release=True)  # a clean stop hands over at once
    assert a.tick()
    assert first is not None and a.token == first + 2  # a new epoch each time the lease changes hands


# A leader that takes the lease, opens a replica transaction and is paused (SIGSTOP) in the middle of a pipelined
# executemany: its session is "active" to the server, which then ends it by no timeout of its own.
_PAUSED_LEADER = """
import os, signal, sys, threading
from writeback.adapters.state.leases import session_name
from writeback.adapters.state.postgres import PostgresStore
from writeback.app.lease import LeaderLease
from writeback.core.model import CloudGroup, MemberRef
url, holder = sys.argv[1], sys.argv[2]
lease = LeaderLease(PostgresStore(url, application_name=session_name(holder)), ttl=2, renew_interval=1, holder=holder)
assert lease.tick()
store = PostgresStore(url, application_name=session_name(holder))
with store.transaction() as tx:
    tx.upsert_group(CloudGroup("g1", display_name="the paused leader's"))
    print("in its transaction", flush=True)
    members = [MemberRef("user", f"u{i}") for i in range(400_000)]
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGSTOP)).start()
    tx.add_members("g1", members)
print("committed", flush=True)
"""


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@contextmanager
def _plain_role(postgres_url: str) -> Iterator[str]:
    """The URL of a new role that is no superuser and owns the test database (as docs/ha.md creates it)."""
    role, password = f"wb_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(role))
        )
    parts = urlsplit(postgres_url)
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_instance_taking_the_lease_over_ends_the_sessions_of_one_paused_mid_statement(
    postgres_url: str,
) -> None:
    with _plain_role(postgres_url) as url:
        _paused_mid_statement(url)


def _paused_mid_statement(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )
    PostgresStore(postgres_url).close()  # the schema, before the two instances
    paused, taker = "paused-host:101:0a0a0a0a", "taking-host:202:0b0b0b0b"
    child = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_LEADER, postgres_url, paused],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "in its transaction"
        deadline = time.monotonic() + 10
        while not _stopped(child.pid):
            assert time.monotonic() < deadline, "the leader was not paused"
            time.sleep(0.05)

        def sessions() -> list[str]:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT state FROM pg_stat_activity WHERE application_name = %s", (session_name(paused),)
                ).fetchall()
            return sorted(str(r[0]) for r in rows)

        assert "active" in sessions()  # paused mid-statement: not idle, no server timeout ends it
        store = PostgresStore(postgres_url, application_name=session_name(taker))
        lease = LeaderLease(
            PostgresStore(postgres_url, application_name=session_name(taker)),
            ttl=2,
            renew_interval=1,
            holder=taker,
        )
        deadline = time.monotonic() + 10
        while not lease.tick():  # until the paused instance's lease has run out
            assert time.monotonic() < deadline, lease.reason
            time.sleep(0.2)
        assert sessions() == []
        started = time.monotonic()
        with store.transaction() as tx:  # the rows the paused one had locked
            tx.upsert_group(CloudGroup("g1", display_name="the new leader's"))
        assert time.monotonic() - started < 5  # no lock wait (a statement waits 10 s at most, then fails)
        snapshot = store.snapshot()
        assert snapshot.groups["g1"].display_name == "the new leader's"
        assert snapshot.groups["g1"].members == frozenset()  # the paused transaction was rolled back
        store.close()
        lease.store.close()
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
        out, err = child.communicate(timeout=60)
    # Resumed, it finds its session ended: its statement fails as a lost connection, nothing committed.
    assert child.returncode != 0 and "committed" not in out, err
    assert "StateUnavailableError" in err, err


def test_two_servers_racing_for_a_free_lease_never_both_win(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(8)]
    leases = [LeaderLease(s, ttl=30, renew_interval=5, holder=f"h{i}") for i, s in enumerate(stores)]
    start = threading.Barrier(len(leases))
    results: list[bool] = []

    def race(lease: LeaderLease) -> None:
        start.wait()
        results.append(lease.tick())

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    for s in stores:
        s.close()


def test_servers_starting_together_migrate_the_schema_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[PostgresStore] = []

    def open_one() -> None:
        try:
            opened.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(s.schema_version() == len(MIGRATIONS) for s in opened)
    rows = opened[0].db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
    for s in opened:
        s.close()


def test_a_newer_schema_in_postgresql_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).db.execute(
        "INSERT INTO schema_migrations VALUES (?, 0)", (len(MIGRATIONS) + 1,)
    )
    with pytest.raises(StateSchemaError, match="written by a newer writeback"):
        PostgresStore(postgres_url)


def test_the_connection_comes_back_after_a_server_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url)
    store.record_applied("g1", "CN=G1,DC=x")
    postgres_server.stop()
    try:
        with pytest.raises(StateUnavailableError) as info:
            store.applied_dns()
        message = str(info.value)
        _, password = without_password(postgres_url)
        assert password not in message
        assert "Check that PostgreSQL runs and is reachable" in message
    finally:
        postgres_server.start()
    assert store.applied_dns() == {"g1": "CN=G1,DC=x"}  # reconnected by itself


def test_a_wrong_password_says_what_to_check_without_showing_it(postgres_url: str) -> None:
    url, password = without_password(postgres_url)
    with pytest.raises(StateError) as info:
        PostgresStore(url, password=password + "x")
    message = str(info.value)
    assert "password" in message and "state.password_env" in message
    assert password not in message and password + "x" not in message


def test_tls_is_verified_by_default(postgres_url: str) -> None:
    url, password = without_password(postgres_url)
    bare = url.split("?", 1)[0]  # no sslrootcert: the sandbox CA is unknown, so verify-full must refuse
    with pytest.raises(StateUnavailableError) as info:
        PostgresStore(bare, password=password)
    assert "certificate" in str(info.value).lower() or "root" in str(info.value).lower()


def test_state_migrate_copies_a_sqlite_state_into_postgresql(tmp_path: Path, postgres_url: str) -> None:
    sqlite_path = tmp_path / "state.sqlite"
    src = SqliteStore(sqlite_path)
    with src.transaction() as tx:
        tx.upsert_user(CloudUser("u1", display_name="Ann"))
        tx.upsert_group(CloudGroup("g1", display_name="Sales"))
        tx.add_members("g1", [MemberRef("user", "u1")])
        tx.set_delta_link("users", "https://graph/users?token=1")
        tx.set_delta_link("groups", "https://graph/groups?token=2")
    src.log("run1", "create", "success", cloud_id="g1", group_name="Sales", detail={"members": 1})
    src.record_applied("g1", "CN=Sales,OU=W,DC=corp,DC=test")
    src.record_fingerprints({"g1": "abc"})
    src.put_ad_users([{"id": "guid-1", "department": "HR"}], replace=True, usn=42, dc="inv-1")
    src.set_allowances({"deletes": 3})
    src.close()
    url, password = without_password(postgres_url)
    config = tmp_path / "writeback.toml"
    config.write_text(
        f"""
[source]
tenant_id = "t"
client_id = "c"
client_secret_env = "UNUSED_SECRET"
[target]
ldap_urls = ["ldaps://127.0.0.1"]
bind_dn = "CN=x"
bind_password_env = "UNUSED_PASSWORD"
base_dn = "DC=corp,DC=test"
target_ou = "OU=W,DC=corp,DC=test"
[state]
path = "{sqlite_path}"
"""
    )
    env = {**os.environ, "PGPASSWORD": password}
    env.pop("WRITEBACK_CONFIG", None)
    argv = [sys.executable, "-m", "writeback", "--config", str(config), "state", "migrate", "--to", url]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert "members       1 row\n" in done.stdout

    dst = PostgresStore(postgres_url)
    snap = dst.snapshot()
    assert snap.groups["g1"].members == frozenset({MemberRef("user", "u1")})
    assert snap.users["u1"].display_name == "Ann"
    assert dst.has_synced() and dst.get_delta_link("groups") == "https://graph/groups?token=2"
    assert [(e.id, e.action, e.detail) for e in dst.read_log()] == [(1, "create", {"members": 1})]
    assert dst.applied_dns() == {"g1": "CN=Sales,OU=W,DC=corp,DC=test"}
    assert dst.applied_fingerprints() == {"g1": "abc"}
    assert dst.ad_users_watermark() == ("inv-1", 42) and dst.ad_users() == [
        {"id": "guid-1", "department": "HR"}
    ]
    assert dst.allowances() == {"deletes": 3}
    dst.log("run2", "update", "success", cloud_id="g1")  # new rows are numbered after the copied ones
    assert [e.id for e in dst.read_log()] == [1, 2]
    assert {t: len(dst.read_table(t)[1]) for t in ALL_TABLES}["log"] == 2

    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode != 0 and "already holds a writeback state" in again.stderr
    assert json.dumps(password) not in again.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_marks_ride_the_round_and_a_mark_made_meanwhile_survives_settling(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The quick reconcile's cloud side: a round marks the changed group and the groups holding a changed user
    or group in its own transaction (a rolled-back round marks nothing); settling clears only marks up to the
    number the reconcile read, so a group marked again while it ran stays pending."""
    store = open_store(request, tmp_path, backend)
    user = CloudUser("u1", on_premises_sync_enabled=True)
    with store.transaction() as tx:
        tx.upsert_user(user)
        for g in ("g1", "g2", "parent"):
            tx.upsert_group(CloudGroup(g, display_name=g))
        tx.add_members("g1", [MemberRef("user", "u1")])
        tx.add_members("parent", [MemberRef("group", "g2")])
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.mark_changed("groups", ["g2"])
        raise RuntimeError("the round failed")
    assert store.pending_groups().groups == frozenset()
    with store.transaction() as tx:
        tx.mark_changed("users", ["u1"])
        tx.mark_changed("groups", ["g2"])
    read = store.pending_groups()
    assert read.groups == {"g1", "g2", "parent"}
    with store.transaction() as tx:
        tx.mark_changed("groups", ["g2"])  # changed again while the reconcile runs
    store.settle_pending(read.groups, read.upto)
    assert store.pending_groups().groups == {"g2", "parent"}, "g2 and the group holding it, marked again"
    # Marked after a given counter value: what a pass that did not make the marks must still plan.
    assert store.pending_groups(after=read.upto).groups == {"g2", "parent"}
    latest = store.pending_groups()
    assert store.pending_groups(after=latest.upto).groups == frozenset() and latest.upto > read.upto


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_log_from_before_the_actor_column_upgrades_in_place_and_names_who_from_then_on(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlbase, "MIGRATIONS", MIGRATIONS[: LOG_ACTOR_VERSION - 1])
    old = open_store(request, tmp_path, backend)  # a state as the writeback before the actor column made it
    monkeypatch.undo()
    assert old.schema_version() == LOG_ACTOR_VERSION - 1
    assert "actor" not in [d[0] for d in old.db.execute("SELECT * FROM log").description]
    with old.batch():
        old.db.execute(
            "INSERT INTO log (time, run_id, cloud_id, action, result) VALUES (?, ?, ?, ?, ?)",
            (time.time(), "old-run", "g1", "create", "success"),
        )
    old.close()

    store = another_connection(old, tmp_path)  # the next start of writeback migrates it
    try:
        assert store.schema_version() == len(MIGRATIONS)
        (kept,) = store.read_log()
        assert (kept.run_id, kept.cloud_id, kept.action, kept.actor) == ("old-run", "g1", "create", None)
        store.log_rows([LogRecord("r2", "allow", "info", detail={"removals": 4}, actor="olga")])
        store.log("r3", "reconcile", "info", actor="vic")
        assert [(e.run_id, e.actor) for e in store.read_log()] == [
            ("old-run", None),
            ("r2", "olga"),
            ("r3", "vic"),
        ]
        newest = store.query_log(LogQuery())
        assert [e.actor for e in newest] == ["vic", "olga", None]
        entry = store.log_entry(newest[1].id)
        assert entry is not None and entry.to_dict()["actor"] == "olga" and entry.detail == {"removals": 4}
        columns, rows = store.read_table("log")  # `writeback state migrate` copies the column too
        assert "actor" in columns and sorted(r[columns.index("actor")] or "" for r in rows) == [
            "",
            "olga",
            "vic",
        ]
    finally:
        store.close()
