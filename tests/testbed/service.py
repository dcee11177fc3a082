"""Shared helpers (no tests) for the service, crash and fault tests: a private Graph emulator, configs, the CLI.

Why a private emulator: these tests switch on faults (429 storms, dropped connections), force 410 Gone and
count requests. On the shared sandbox emulator that would disturb every other test session using it, and its
request counters would include their traffic. The private one serves a copy of the sandbox's tenant, so its
synced users are the sandbox DC's real accounts (same SIDs and DNs) and writeback can resolve them in AD.

Named ``test_*`` only because that is the file pattern this work owns; it defines no tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.testbed.ad import AdGroup, AdView
from tests.testbed.cloud import GraphAdmin
from tests.testbed.config import GraphApp, write_config
from writeback.console.auth import token_line
from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator
from writeback.testbed.sandbox import SandboxInfo
from writeback.testbed.sandbox.console import free_port

POLL = 0.3  # service.poll_interval in these tests
ANCHOR_ATTRS = ("msDS-ExternalDirectoryObjectId", "adminDescription")


# -- the cloud -----------------------------------------------------------------------------------------------


def sandbox_tenant(info: SandboxInfo) -> dict[str, Any]:
    """The sandbox's tenant file as a dict (a fresh copy each call)."""
    with open(info.tenant_file, "rb") as fh:  # YAML, or JSON (a YAML subset) for big sandboxes
        data: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data


def synced_user_ids(tenant: dict[str, Any]) -> list[str]:
    """Ids of the tenant's users synced from the sandbox DC (they resolve to AD accounts), sorted."""
    return sorted(
        u["id"]
        for u in tenant["users"]
        if u.get("onPremisesSyncEnabled") and u.get("onPremisesSecurityIdentifier")
    )


def group_body(gid: str, name: str, members: Sequence[str]) -> dict[str, Any]:
    return {
        "id": gid,
        "displayName": name,
        "description": f"test group {name}",
        "mailNickname": name.replace(" ", "")[:60],
        "mailEnabled": False,
        "securityEnabled": True,
        "groupTypes": [],
        "members": list(members),
    }


@contextmanager
def private_cloud(
    info: SandboxInfo, data_dir: Path, extra_groups: Sequence[dict[str, Any]] = ()
) -> Iterator[EmulatorHandle]:
    """A Graph emulator of our own serving the sandbox tenant plus ``extra_groups``."""
    tenant = sandbox_tenant(info)
    tenant["groups"] = [*tenant.get("groups", []), *extra_groups]
    with run_emulator(tenant, data_dir) as handle:
        yield handle


class Cloud(GraphAdmin):
    """The cloud administrator of a private emulator, through Graph (plus the admin API for faults)."""

    def __init__(self, handle: EmulatorHandle) -> None:
        self.h = handle

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One Graph call as an administrator's script makes it: retried through the faults a test switched
        on (429, 503, dropped connections) and with a new token after a revocation."""
        last = ""
        for attempt in range(40):
            time.sleep(0.1 if attempt else 0)
            try:
                r = self.h.graph(method, path, json=body)
            except httpx.TransportError as exc:
                last = repr(exc)
                continue
            last = f"{r.status_code} {r.text[:200]}"
            if r.status_code == 401:
                self.h._token = None
                continue
            if r.status_code in (429, 503):
                continue
            assert r.status_code < 300, f"{method} {path}: {last}"
            return r.json() if r.content else None
        raise AssertionError(f"{method} {path}: still failing after 40 attempts: {last}")

    def raw_add_member(self, gid: str, member_id: str) -> None:
        """Through the emulator's admin API, which no fault touches (for changes made during an outage)."""
        self.h.admin("members", {"group": gid, "add": [member_id]})

    def faults(self, **switches: Any) -> None:
        self.h.set_faults(**switches)

    def stats(self) -> dict[str, Any]:
        return self.h.stats()

    def reset_stats(self) -> None:
        self.h.admin("stats", {"reset": True})

    def user_dns(self) -> dict[str, str]:
        """Synced user id -> lower-cased AD DN (from the tenant's onPremisesDistinguishedName)."""
        with self.h.tenant.lock:
            users = list(self.h.tenant.live["user"].values())
        return {
            u["id"]: str(u["onPremisesDistinguishedName"]).lower()
            for u in users
            if u.get("onPremisesSyncEnabled") and u.get("onPremisesDistinguishedName")
        }

    def members(self, gid: str) -> list[str]:
        with self.h.tenant.lock:
            return list(self.h.tenant.members.get(gid, {}))


# -- writeback installations -----------------------------------------------------------------------------------


def cli_argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "writeback", "--config", str(config), *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WRITEBACK_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(config, *args), capture_output=True, text=True, env=cli_env(), timeout=timeout
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as exc:  # a check may assert to explain what it still misses
            last_exc, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f": {last_exc}" if last_exc else "")
    )


# -- Active Directory, read independently of writeback --------------------------------------------------------


def expected_members(
    cloud: Cloud, gids: Sequence[str], dn_of_group: Callable[[str], str | None]
) -> dict[str, set[str]]:
    """What AD must hold for each in-scope group: its synced users' DNs and its in-scope child groups' DNs."""
    user_dns = cloud.user_dns()
    in_scope = set(gids)
    out: dict[str, set[str]] = {}
    for gid in gids:
        want: set[str] = set()
        for m in cloud.members(gid):
            if m in user_dns:
                want.add(user_dns[m])
            elif m in in_scope:
                child = dn_of_group(m)
                assert child is not None, f"child group {m} of {gid} missing in AD"
                want.add(child.lower())
        out[gid] = want
    return out


def converged(ad: AdView, cloud: Cloud, gids: Sequence[str], *, extra_groups: int = 0) -> bool:
    """True when AD holds exactly one group per id with exactly the expected members (raises with details
    otherwise, for :func:`wait_for` and for direct asserts)."""
    groups = ad.groups()
    anchored: dict[str, list[AdGroup]] = {}
    for g in groups:
        if g.anchor:
            anchored.setdefault(g.anchor, []).append(g)
    dupes = {gid: [g.dn for g in gs] for gid, gs in anchored.items() if len(gs) > 1}
    assert not dupes, f"groups carrying the same anchor: {dupes}"
    missing = sorted(set(gids) - anchored.keys())
    assert not missing, f"{len(missing)} groups missing in AD, e.g. {missing[:3]}"
    unexpected = sorted(anchored.keys() - set(gids))
    assert not unexpected, f"AD groups for ids out of scope: {unexpected[:3]}"
    assert len(groups) == len(gids) + extra_groups, (
        f"{len(groups)} groups in the OU, expected {len(gids) + extra_groups}"
    )
    want = expected_members(cloud, gids, lambda c: anchored[c][0].dn if c in anchored else None)
    wrong = {
        gid: (sorted(anchored[gid][0].members ^ want[gid]))[:4]
        for gid in gids
        if anchored[gid][0].members != want[gid]
    }
    assert not wrong, (
        f"{len(wrong)} groups with wrong members (symmetric difference shown): {dict(list(wrong.items())[:3])}"
    )
    return True


def add_canary(conn: Any, ou: str, member_dn: str) -> str:
    """An unmanaged group (no anchor) in the OU, with one member: writeback must never touch it."""
    dn = f"CN=Canary Unmanaged,{ou}"
    conn.add_s(
        dn,
        [
            ("objectClass", [b"top", b"group"]),
            ("sAMAccountName", f"canary-{ou.split(',')[0][5:]}"[:20].encode()),
            ("description", b"not writeback's"),
            ("member", [member_dn.encode()]),
        ],
    )
    return dn


def read_health(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


# -- the service as a subprocess ------------------------------------------------------------------------------


class RunningService:
    """`writeback run` in a subprocess; its JSON log goes to a file the test reads."""

    def __init__(self, config: Path, home: Path) -> None:
        self.health_file = home / "health.json"
        self.log_file = home / "service.log"
        self._log = open(self.log_file, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cli_argv(config, "run"), stdout=subprocess.DEVNULL, stderr=self._log, env=cli_env(), text=True
        )

    def health(self) -> dict[str, Any]:
        return read_health(self.health_file)

    def log_lines(self) -> list[str]:
        return self.log_file.read_text().splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


def service_config(
    sandbox: Any,
    cloud: Cloud,
    ou: str,
    home: Path,
    prefix: str,
    extra: str = "",
    target_ou: str | None = None,
) -> Path:
    """A config for `writeback run`: groups named ``prefix``..., short poll and backoff, a health file."""
    scope = f"""[scope]
mode = "all"
[[scope.filters]]
clauses = [{{ attribute = "displayName", operator = "STARTS_WITH", value = "{prefix}" }}]"""
    service = f"""
[service]
poll_interval = {POLL}
reconcile_interval = 3600
max_backoff = 2
health_file = "{home / "health.json"}"
{extra}"""
    return write_config(
        home,
        sandbox,
        ou,
        graph=GraphApp.of_emulator(cloud.h),
        scope=scope,
        extra=service,
        target_ou=target_ou,
        short_timeouts=True,
    )


@pytest.fixture
def service_factory() -> Iterator[Any]:
    started: list[RunningService] = []

    def start(config: Path) -> RunningService:
        svc = RunningService(config, config.parent)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop(signal.SIGKILL)


@pytest.fixture(name="cloud")
def private_cloud_fixture(sandbox: Any, tmp_path: Path) -> Iterator[Cloud]:
    """A private emulator serving a copy of the sandbox tenant (faults and counters stay local to a test)."""
    with private_cloud(sandbox, tmp_path / "emulator") as handle:
        yield Cloud(handle)


def console_settings(home: Path, token: str, role: str = "viewer") -> tuple[str, str]:
    """The [service] lines and [console] table that serve a console from ``home`` with one token of ``role``
    (for ``service_config``'s ``extra``), and the console's URL."""
    home.mkdir(parents=True, exist_ok=True)
    tokens = home / "console_tokens"
    tokens.write_text(token_line("olga" if role == "operator" else "vic", role, token))
    tokens.chmod(0o600)
    port = free_port()
    return f'listen = "127.0.0.1:{port}"\n[console]\ntokens_file = "{tokens}"\n', f"http://127.0.0.1:{port}"
