"""``python -m benchmarks.memory [small|medium|large|biggroup]``: the engine's peak memory per phase, without a DC.

What it runs is the benchmark's first apply and a deep (full) reconcile with nothing to change, each in its own
child process so each peak is that process's own (like ``benchmarks/bench/engine_child.py``):

- the benchmark's tenant generator (:mod:`benchmarks.bench.tenantgen`, :mod:`benchmarks.bench.sizes`) over
  synthetic AD accounts (the sandbox's own user generator, :func:`writeback.testbed.sandbox.people.generated_people`),
  served by the Graph emulator in this (the parent) process, so none of its memory is the engine's; with
  ``biggroup --members N [N ...]`` instead, for each N one assigned group of N synced members in a tenant of
  N + 2,000 users as ``scripts/bench biggroup`` builds it (issue 27), each N in its own directory under ``--dir``;
- the real Graph adapter syncing into a real SQLite state, the real planner and ``Engine.apply``;
- instead of the DC, :class:`DiskDirectory`: a directory double that keeps AD in a SQLite file (AD's memory is
  not the engine's either) and answers the reads as the LDAP adapter does — fresh ``DirectoryAccount`` and
  ``DirectoryGroup`` values, member DNs as decoded from the wire, every user when more than
  ``FULL_SCAN_TERMS`` accounts are asked for — and refuses what AD refuses on the write path the engine uses
  (a member value naming no object, an existing DN).

Each phase reports the process's peak RSS (``VmHWM``) reached by its end, and the phase's own peak (the
high-water mark is reset before it through ``/proc/self/clear_refs``, Linux >= 4.0). ``--tracemalloc`` also
lists the top allocation sites at the end of planning, and for each step of planning (the replica snapshot,
cloud intents, questions, gathering, desired state, the plan, the safety holds) and each member write the
traced memory held after it and its own traced peak (slow: several times the run time).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench.sizes import SIZES, Size
from benchmarks.bench.tenantgen import generate
from writeback.adapters.directory.adapter import AccountKeys, shared_account
from writeback.adapters.directory.codec import guid_to_bytes, sid_from_str
from writeback.adapters.directory.entries import account_from_entry, group_from_entry
from writeback.core.dn import normalize_dn
from writeback.core.model import (
    ANCHOR_PREFIXES,
    AttributeValue,
    DirectoryAccount,
    DirectoryGroup,
)
from writeback.core.ports import ResolvedAccounts, UserChanges, UsnWatermark
from writeback.errors import DirectoryWriteError
from writeback.testbed.sandbox.layout import BASE_DN, STAFF_OU
from writeback.testbed.sandbox.people import generated_people
from writeback.testbed.sandbox.seed import Account

ROOT = Path(__file__).resolve().parents[1]
USERS_ONLY = "ad-users.sqlite"
FULL_SCAN_TERMS = 2_000  # as writeback.adapters.directory.adapter: above this, every user is read
DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
TARGET_OU = f"OU=Engine,OU=bench-mem,{BASE_DN}"
ANCHORS = ("msDS-ExternalDirectoryObjectId", "adminDescription")
# The sandbox DC has no Exchange schema unless extended; mail groups are not part of the benchmark.
ABSENT_ATTRIBUTES = frozenset(
    a.lower() for a in ("mailNickname", "msExchRecipientTypeDetails", "msExchRecipientDisplayType")
)


def synthetic_accounts(count: int) -> list[Account]:
    """``count`` AD users as a seeded sandbox holds them (names, departments, titles), with SIDs and GUIDs."""
    out: list[Account] = []
    for i, p in enumerate(generated_people(count)):
        attrs = {k: [v.decode() for v in vals] for k, vals in p.ldap_attributes() if k != "objectClass"}
        out.append(
            Account(
                dn=p.dn(STAFF_OU),
                object_guid=uuid.UUID(int=(0x5EED << 64) + i, version=4),
                sid=f"{DOMAIN_SID}-{2000 + i}",
                sam=p.sam,
                kind="user",
                attributes=attrs,
            )
        )
    return out


# -- the directory double -------------------------------------------------------------------------------------


class DiskDirectory:
    """A :class:`writeback.core.ports.Directory` keeping AD in a SQLite file (see the module doc).

    Like AD it holds one object per DN (compared case-insensitively), refuses an add at an existing DN and a
    member value that names no object (AD: noSuchObject, LDAP 32), and keeps the member values of a group as
    a set. Reads build new values each time, as the LDAP adapter decodes every answer anew.
    """

    def __init__(self, path: Path) -> None:
        # The engine writes from its apply's writer thread (writeback.app.writer) and reads from its own, one
        # after the other, as it uses an LDAP connection: never two threads at once.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS objects (ndn TEXT PRIMARY KEY, dn TEXT NOT NULL, kind TEXT NOT NULL,
                guid TEXT NOT NULL, sid TEXT, sam TEXT, group_type INTEGER, attrs TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE IF NOT EXISTS members (ndn TEXT NOT NULL, member TEXT NOT NULL, nmember TEXT NOT NULL,
                PRIMARY KEY (ndn, nmember)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS objects_by_sid ON objects (sid);
            CREATE INDEX IF NOT EXISTS objects_by_guid ON objects (guid);
            """
        )
        self.stats: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.stats[op] = self.stats.get(op, 0) + 1

    def add_users(self, accounts: Iterable[Account]) -> None:
        rows = [
            (normalize_dn(a.dn), a.dn, "user", str(a.object_guid), a.sid, a.sam, None, "{}") for a in accounts
        ]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO objects VALUES (?,?,?,?,?,?,?,?)", rows)
        self.db.execute("COMMIT")

    # reads --------------------------------------------------------------------------------------------------
    def has_attribute(self, ldap_name: str) -> bool:
        return ldap_name.lower() not in ABSENT_ATTRIBUTES

    def resolve_accounts(self, sids: Iterable[str], guids: Iterable[str]) -> ResolvedAccounts:
        self._count("search")
        # Each key held once, and an account found shares its SID and GUID strings with its keys, as in the
        # LDAP adapter (its AccountKeys and shared_account).
        sid_keys, guid_keys = AccountKeys(), AccountKeys()
        for sid in sids:
            sid_keys.add(sid.upper(), sid)
        for guid in guids:
            guid_keys.add(guid.lower(), guid)
        if len(sid_keys) + len(guid_keys) > FULL_SCAN_TERMS:
            rows: Iterable[Any] = self.db.execute(
                "SELECT dn, guid, sid, kind FROM objects WHERE kind = 'user'"
            )
        else:
            rows = [
                *self._select("SELECT dn, guid, sid, kind FROM objects WHERE sid", list(sid_keys)),
                *self._select("SELECT dn, guid, sid, kind FROM objects WHERE guid", list(guid_keys)),
            ]
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        for dn, guid, sid, kind in rows:
            # Decoded by the LDAP adapter's own code from what the wire carries (binary GUID and SID).
            raw = {"objectguid": [guid_to_bytes(guid)], "objectclass": [b"top", kind.encode()]}
            if sid:
                raw["objectsid"] = [sid_from_str(sid)]
            account = account_from_entry(dn, raw)
            sid_given = sid_keys.given(account.object_sid or "")
            guid_given = guid_keys.given(account.object_guid)
            if not sid_given and not guid_given:
                continue
            account = shared_account(account, sid_keys, guid_keys)
            for given in sid_given:
                by_sid.setdefault(given, account)
            for given in guid_given:
                by_guid.setdefault(given, account)
        return ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    def _select(self, prefix: str, values: Sequence[str]) -> Iterator[Any]:
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            yield from self.db.execute(f"{prefix} IN ({','.join('?' * len(chunk))})", chunk)

    def resolve_groups_by_sid(self, sids: Iterable[str]) -> dict[str, DirectoryAccount]:
        self._count("search")
        rows = self._select(
            "SELECT dn, guid, sid, group_type FROM objects WHERE kind = 'group' AND sid",
            [s.upper() for s in sids],
        )
        return {sid.upper(): DirectoryAccount(dn, guid, sid, "group", gt) for dn, guid, sid, gt in rows}

    def _groups(
        self, rows: Iterable[Any], anchors: Sequence[str], mapped: Sequence[str]
    ) -> list[DirectoryGroup]:
        """Groups as the LDAP adapter builds them: the whole search result first (raw values, as
        ``Session.search`` returns it), then each entry decoded by ``group_from_entry``."""
        present = [a for a in anchors if self.has_attribute(a)]
        entries: list[tuple[str, dict[str, list[bytes]]]] = []
        for ndn, dn, guid, sid, sam, group_type, attrs_text in rows:
            raw: dict[str, list[bytes]] = {
                "objectguid": [guid_to_bytes(guid)],
                "samaccountname": [sam.encode()],
                "grouptype": [str(group_type).encode()],
                "member": [
                    m.encode() for (m,) in self.db.execute("SELECT member FROM members WHERE ndn = ?", (ndn,))
                ],
            }
            if sid:
                raw["objectsid"] = [sid_from_str(sid)]
            for name, value in json.loads(attrs_text).items():
                values = value if isinstance(value, list) else [value]
                raw[name.lower()] = [str(v).encode() for v in values]
            entries.append((dn, raw))
        out: list[DirectoryGroup] = []
        for dn, raw in entries:
            members = [m.decode("utf-8") for m in raw.pop("member")]
            out.append(group_from_entry(dn, raw, members, present, mapped))
        return out

    _GROUP_COLUMNS = "SELECT ndn, dn, guid, sid, sam, group_type, attrs FROM objects WHERE kind = 'group'"

    def read_managed_groups(
        self,
        anchor_attributes: Sequence[str] = ANCHORS,
        mapped: Sequence[str] = ("description", "displayName"),
        prefixes: Sequence[str] = ANCHOR_PREFIXES,
    ) -> list[DirectoryGroup]:
        self._count("search")
        groups = self._groups(self.db.execute(self._GROUP_COLUMNS), anchor_attributes, mapped)
        return sorted(
            (g for g in groups if g.anchor and g.anchor.startswith(tuple(prefixes))),
            key=lambda g: normalize_dn(g.dn),
        )

    def read_groups(
        self, dns: Iterable[str], anchor_attributes: Sequence[str] = ANCHORS, mapped: Sequence[str] = ()
    ) -> list[DirectoryGroup]:
        self._count("search")
        wanted = list(dict.fromkeys(normalize_dn(d) for d in dns))
        rows = list(self._select(self._GROUP_COLUMNS + " AND ndn", wanted))
        return self._groups(rows, anchor_attributes, mapped)

    def read_groups_with_accounts(
        self, dns: Iterable[str], anchor_attributes: Sequence[str] = ANCHORS, mapped: Sequence[str] = ()
    ) -> tuple[list[DirectoryGroup], ResolvedAccounts]:
        """:meth:`read_groups` and the members' accounts, as the extended DN control brings them (one
        domain, no foreign security principals here: every member object is an account)."""
        groups = self.read_groups(dns, anchor_attributes, mapped)
        by_sid: dict[str, DirectoryAccount] = {}
        by_guid: dict[str, DirectoryAccount] = {}
        for group in groups:
            # The account's DN is the group's member value itself, as the adapter's parse of each extended DN
            # value gives it (one string per member).
            members = list(group.members)
            for i in range(0, len(members), 500):
                chunk = {normalize_dn(m): m for m in members[i : i + 500]}
                for ndn, guid, sid in self._select(
                    "SELECT ndn, guid, sid FROM objects WHERE ndn", list(chunk)
                ):
                    account = DirectoryAccount(chunk[ndn], str(guid).lower(), sid.upper() if sid else None)
                    by_guid.setdefault(account.object_guid, account)
                    if account.object_sid:
                        by_sid.setdefault(account.object_sid, account)
        return groups, ResolvedAccounts(by_sid=by_sid, by_guid=by_guid)

    def existing_dns(self, dns: Iterable[str]) -> set[str]:
        self._count("search")
        given = {normalize_dn(d): d for d in dns}
        return {given[n] for (n,) in self._select("SELECT ndn FROM objects WHERE ndn", list(given))}

    def taken_sam_account_names(self, names: Iterable[str]) -> dict[str, str]:
        self._count("search")
        wanted = [n.lower() for n in names]
        rows = self._select("SELECT lower(sam), dn FROM objects WHERE lower(sam)", wanted)
        return dict(rows)

    def read_user_changes(self, base_dn: str, since: UsnWatermark | None) -> UserChanges:
        return UserChanges(users=[], watermark=UsnWatermark("dc", 1), full=since is None)

    # writes -------------------------------------------------------------------------------------------------
    def _check_members(self, dn: str, members: Sequence[str]) -> None:
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (n TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM wanted")
        self.db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((normalize_dn(m),) for m in members))
        row = self.db.execute(
            "SELECT n FROM wanted WHERE n NOT IN (SELECT ndn FROM objects) LIMIT 1"
        ).fetchone()
        if row is not None:
            raise DirectoryWriteError(
                f"no such object {row[0]} (member of {dn})", dn=dn, result="NO_SUCH_OBJECT"
            )

    def _insert_members(self, dn: str, members: Sequence[str]) -> None:
        ndn = normalize_dn(dn)
        self.db.executemany(
            "INSERT OR IGNORE INTO members VALUES (?,?,?)", ((ndn, m, normalize_dn(m)) for m in members)
        )

    def create_group(self, dn: str, attributes: Mapping[str, Any], members: Sequence[str]) -> None:
        self._count("add")
        ndn = normalize_dn(dn)
        if self.db.execute("SELECT 1 FROM objects WHERE ndn = ?", (ndn,)).fetchone():
            raise DirectoryWriteError(f"already exists: {dn}", dn=dn, result="ALREADY_EXISTS")
        self._check_members(dn, members)
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}
        self.db.execute("BEGIN")
        self.db.execute(
            "INSERT INTO objects VALUES (?,?,?,?,?,?,?,?)",
            (
                ndn,
                dn,
                "group",
                str(uuid.uuid4()),
                None,
                str(attributes.get("sAMAccountName")),
                int(attributes["groupType"]),
                json.dumps({k: v for k, v in attrs.items() if k not in ("objectClass", "groupType")}),
            ),
        )
        self._insert_members(dn, members)
        self.db.execute("COMMIT")

    def modify_attributes(self, dn: str, values: Mapping[str, AttributeValue]) -> None:
        self._count("modify")
        ndn = normalize_dn(dn)
        (text,) = self.db.execute("SELECT attrs FROM objects WHERE ndn = ?", (ndn,)).fetchone()
        attrs = json.loads(text)
        for k, v in values.items():
            if v is None:
                attrs.pop(k, None)
            else:
                attrs[k] = list(v) if isinstance(v, tuple) else v
        self.db.execute("UPDATE objects SET attrs = ? WHERE ndn = ?", (json.dumps(attrs), ndn))

    def move(self, dn: str, new_dn: str) -> None:
        raise DirectoryWriteError("the memory harness renames nothing", dn=dn, result="UNWILLING_TO_PERFORM")

    def add_members(self, dn: str, members: Sequence[str]) -> None:
        self._count("modify")
        self._check_members(dn, members)
        self._insert_members(dn, members)

    def remove_members(self, dn: str, members: Sequence[str]) -> None:
        self._count("modify")
        ndn = normalize_dn(dn)
        self.db.executemany(
            "DELETE FROM members WHERE ndn = ? AND nmember = ?", ((ndn, normalize_dn(m)) for m in members)
        )

    def delete(self, dn: str) -> None:
        self._count("delete")
        ndn = normalize_dn(dn)
        self.db.execute("DELETE FROM objects WHERE ndn = ?", (ndn,))
        self.db.execute("DELETE FROM members WHERE ndn = ?", (ndn,))

    def close(self) -> None:
        self.db.close()

    def member_values(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM members").fetchone()[0])


# -- measuring ------------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(config: Path, ad_path: Path, scenario: str, trace: bool, *, replan: bool = False) -> dict[str, Any]:
    """One engine run (``first`` apply or ``reconcile``) in this process; peak RSS per phase. ``replan``: only
    plan, from the replica as stored (no Graph), and write nothing."""
    from writeback.app.engine import ApplyResult, Engine
    from writeback.app.wiring import build_graph, build_store
    from writeback.config import load_settings

    settings = load_settings(config)
    _client, source = build_graph(settings)
    directory = DiskDirectory(ad_path)
    engine = Engine(settings, source, directory, build_store(settings))  # type: ignore[arg-type]
    phases: dict[str, dict[str, float]] = {}
    top: list[str] = []

    def measure(name: str, started: float) -> None:
        phases[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "phase_peak_mb": round(_status_mb("VmHWM"), 1),
            "rss_after_mb": round(_status_mb("VmRSS"), 1),
        }

    resettable = _reset_peak()
    if not replan:
        t = time.perf_counter()
        engine.sync()
        measure("sync", t)
        _reset_peak()
    steps: list[dict[str, Any]] = []
    if trace:
        # The peak of a plan is when compute_plan has returned and everything before it is still held:
        # the allocation sites are listed there. Each step of planning (and each write) also reports the
        # traced memory held after it and its own traced peak (what it held at once, on top of what came
        # before), so a transient peak inside a step shows.
        import writeback.app.engine as engine_module

        def stepped(name: str, original: Any, *, sites: bool = False) -> Any:
            def traced(*args: Any, **kwargs: Any) -> Any:
                before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                result = original(*args, **kwargs)
                current, peak = tracemalloc.get_traced_memory()
                steps.append(
                    {
                        "step": name,
                        "held_before_mb": round(before / 2**20, 1),
                        "held_after_mb": round(current / 2**20, 1),
                        "peak_mb": round(peak / 2**20, 1),
                    }
                )
                if sites:
                    top.extend(str(s) for s in tracemalloc.take_snapshot().statistics("lineno")[:30])
                return result

            return traced

        for name in ("cloud_intents", "questions", "gather", "desired_state", "compute_plan", "hold_unsafe"):
            original = getattr(engine_module, name)
            setattr(engine_module, name, stepped(name, original, sites=name == "compute_plan"))
        store = engine.store
        setattr(store, "snapshot", stepped("snapshot", store.snapshot))  # noqa: B010
        for name in ("create_group", "add_members", "remove_members"):
            setattr(directory, name, stepped(name, getattr(directory, name)))
        tracemalloc.start(1)
    t = time.perf_counter()
    plan = engine.plan()
    measure("plan", t)
    _reset_peak()
    t = time.perf_counter()
    result = engine.apply(plan) if not replan else ApplyResult("replan")
    measure("apply", t)
    if trace:
        tracemalloc.stop()
    engine.close()
    return {
        "scenario": scenario,
        "phases": phases,
        "peak_mb": max(p["phase_peak_mb"] for p in phases.values()),
        "per_phase_peaks": resettable,
        "counts": plan.counts(),
        "member_values": plan.member_value_counts(),
        "failed": [f"{r.change.kind.value} {r.change.dn}: {r.error}" for r in result.failed][:5],
        "ad_member_values": DiskDirectory(ad_path).member_values(),
        "gc_counts": gc.get_count(),
        "tracemalloc_steps": steps,
        "tracemalloc_top": top,
    }


def write_config(workdir: Path, handle: Any, size: Size) -> Path:
    secret = workdir / "client_secret"
    secret.write_text(handle.client_secret)
    secret.chmod(0o600)
    password = workdir / "bind_password"
    password.write_text("not-used-by-the-double")
    password.chmod(0o600)
    q = json.dumps
    text = "\n".join(
        [
            "[source]",
            f"tenant_id = {q(handle.tenant_id)}",
            f"client_id = {q(handle.client_id)}",
            f"client_secret_file = {q(str(secret))}",
            f"authority = {q(handle.authority)}",
            f"graph_url = {q(handle.graph_url)}",
            f"ca_file = {q(handle.ca_file)}",
            "[target]",
            'ldap_urls = ["ldaps://127.0.0.1:1"]',
            f"bind_dn = {q('CN=Administrator,CN=Users,' + BASE_DN)}",
            f"bind_password_file = {q(str(password))}",
            f"base_dn = {q(TARGET_OU)}",
            f"target_ou = {q(TARGET_OU)}",
            "[members]",
            f"max_members = {size.max_members}",
            "[state]",
            f"path = {q(str(workdir / 'state.sqlite'))}",
            "",
        ]
    )
    config = workdir / "writeback.toml"
    config.write_text(text)
    return config


def _run_child(workdir: Path, scenario: str, extra: Sequence[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [sys.executable, "-m", "benchmarks.memory", "--child", scenario, "--dir", str(workdir), *extra]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{scenario} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    print(json.dumps(result, indent=1), flush=True)
    return result


def replan(workdir: Path, trace: bool) -> list[dict[str, Any]]:
    """The plans of both scenarios again from a finished run's replica: the first apply's against AD as it was
    before it (users only), the reconcile's against AD as it is. Nothing is written; no emulator needed."""
    extra = ["--replan", *(["--tracemalloc"] if trace else [])]
    return [_run_child(workdir, "first", extra), _run_child(workdir, "reconcile", extra)]


def biggroup_size(members: int) -> Size:
    """One assigned group of ``members`` synced users in a tenant of ``members + 2,000`` users, as
    ``scripts/bench biggroup`` builds it (:mod:`benchmarks.bench.biggroup`)."""
    from benchmarks.bench.biggroup import big_group_size

    return big_group_size(members, f"biggroup-{members}")


def run(size: Size, workdir: Path, trace: bool) -> list[dict[str, Any]]:
    from writeback.testbed.emulator.testing import run_emulator

    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("state.sqlite", "ad.sqlite"):
        (workdir / stale).unlink(missing_ok=True)
    accounts = synthetic_accounts(size.users)
    if size.name.startswith("biggroup-"):
        from benchmarks.bench.biggroup import _tenant

        tenant = _tenant(accounts, size.big_group)
    else:
        tenant = generate(
            size,
            accounts,
            tenant_id=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret="s3cret-" + uuid.uuid4().hex,
        )
    ad = DiskDirectory(workdir / "ad.sqlite")
    ad.add_users(accounts)
    ad.close()
    shutil.copyfile(workdir / "ad.sqlite", workdir / USERS_ONLY)  # AD before the first apply, for --replan
    del accounts
    results: list[dict[str, Any]] = []
    with run_emulator(tenant.document, workdir / "emulator") as handle:
        del tenant
        gc.collect()
        write_config(workdir, handle, size)
        for scenario in ("first", "reconcile"):
            results.append(_run_child(workdir, scenario, ["--tracemalloc"] if trace else []))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("size", nargs="?", default="large", choices=[*sorted(SIZES), "biggroup"])
    p.add_argument(
        "--members",
        type=int,
        nargs="+",
        default=[250_000],
        help="biggroup: the group sizes to measure, in order (default 250000)",
    )
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "writeback-memory")
    p.add_argument("--tracemalloc", action="store_true", help="list the top allocation sites after planning")
    p.add_argument(
        "--replan", action="store_true", help="plan both scenarios again from the replica of a run in --dir"
    )
    p.add_argument("--child", choices=("first", "reconcile"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        ad = args.dir / (USERS_ONLY if args.replan and args.child == "first" else "ad.sqlite")
        report = child(args.dir / "writeback.toml", ad, args.child, args.tracemalloc, replan=args.replan)
        print(json.dumps(report))
        return 0
    if args.replan:
        runs = [(f"replan of {args.dir}", replan(args.dir, args.tracemalloc))]
    elif args.size == "biggroup":
        runs = [
            (f"biggroup {m:,}", run(biggroup_size(m), args.dir / f"biggroup-{m}", args.tracemalloc))
            for m in args.members
        ]
    else:
        runs = [(args.size, run(SIZES[args.size], args.dir, args.tracemalloc))]
    for label, results in runs:
        for r in results:
            phases = ", ".join(
                f"{k} {v['phase_peak_mb']:.0f} MB/{v['seconds']}s" for k, v in r["phases"].items()
            )
            print(f"{label} {r['scenario']}: peak {r['peak_mb']:.0f} MB ({phases}); changes {r['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
