"""End-to-end fixtures: the `writeback` CLI run as a user runs it, against the sandbox DC and emulator.

Each test gets its own OU (used as base_dn and target OU, so its managed groups are invisible to other tests),
its own state file, and creates its own cloud groups through Graph like an administrator's script would.
writeback binds as the sandbox's least-privileged service account, delegated on the test's OU exactly as
docs/least-privilege.md says (tests.testbed.fixtures.delegate_to_service_account); the fixtures that stage
or verify AD state use the Administrator.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.testbed.ad import AdView
from tests.testbed.cloud import GraphAdmin
from tests.testbed.config import GraphApp, selected, write_config
from tests.testbed.fixtures import delegate_to_service_account


class CloudAdmin(GraphAdmin):
    """Plays the cloud administrator against the emulator's Graph API (client credentials, HTTPS, CA checked)."""

    def __init__(self, info: Any) -> None:
        self.info = info
        tls = ssl.create_default_context(cafile=str(info.graph_ca_file))
        token = httpx.post(
            f"{info.authority}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info.client_id,
                "client_secret": info.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=tls,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=info.graph_url,
            verify=tls,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def users(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        url: str | None = (
            "/v1.0/users?$select=id,displayName,onPremisesSyncEnabled,onPremisesSamAccountName,onPremisesDistinguishedName,department&$top=999"
        )
        while url:
            page = self.call("GET", url)
            out += page["value"]
            url = page.get("@odata.nextLink")
        return out

    def synced_users(self) -> list[dict[str, Any]]:
        return sorted((u for u in self.users() if u.get("onPremisesSyncEnabled")), key=lambda u: u["id"])

    def cloud_only_users(self) -> list[dict[str, Any]]:
        return [u for u in self.users() if not u.get("onPremisesSyncEnabled")]

    def group_by_name(self, name: str) -> dict[str, Any]:
        quoted = name.replace("'", "''")
        return self.call("GET", f"/v1.0/groups?$filter=startsWith(displayName,'{quoted}')")["value"][0]  # type: ignore[no-any-return]

    def faults(self, **switches: Any) -> None:
        """The emulator's admin API, with its admin token (the Graph token is not accepted there)."""
        admin = {"Authorization": f"Bearer {self.info.emulator_admin_token}"}
        r = self.http.post("/_emulator/faults", json=switches, headers=admin)
        assert r.status_code < 300, r.text


@pytest.fixture(scope="session")
def cloud(sandbox: Any) -> CloudAdmin:
    return CloudAdmin(sandbox)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Workspace:
    """One test's writeback installation: config, state, OU."""

    config: Path
    ou: str
    env: dict[str, str]
    outputs: list[str]

    def run(self, *args: str, timeout: float = 300) -> Result:
        p = subprocess.run(
            [sys.executable, "-m", "writeback", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        self.outputs += [p.stdout, p.stderr]
        return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def workspace(sandbox: Any, test_ou: str, tmp_path: Path) -> Iterator[Callable[..., Workspace]]:
    """Builds a Workspace; at teardown checks that no secret ever appeared in any output, the log or a plan."""
    made: list[Workspace] = []
    delegate_to_service_account(sandbox, test_ou)

    def make(group_ids: list[str], extra: str = "", **kw: Any) -> Workspace:
        home = tmp_path / f"ws{len(made)}"
        graph = GraphApp.of_sandbox(sandbox)
        cfg = write_config(home, sandbox, test_ou, graph=graph, scope=selected(group_ids), extra=extra, **kw)
        env = dict(os.environ)
        env.pop("WRITEBACK_CONFIG", None)
        ws = Workspace(cfg, test_ou, env, [])
        made.append(ws)
        return ws

    yield make
    secrets = [
        sandbox.bind_password,
        sandbox.service_bind_password,
        sandbox.client_secret,
        sandbox.emulator_admin_token,
    ]
    for ws in made:
        texts = list(ws.outputs)
        texts += [p.read_bytes().decode("latin-1") for p in ws.config.parent.glob("state.sqlite*")]
        texts += [p.read_text() for p in ws.config.parent.glob("*.json")]
        for text in texts:
            for secret in filter(None, secrets):
                assert secret not in text, "a secret appeared in an output, the state store or a saved plan"


@pytest.fixture
def ad(ldap_conn: Any, test_ou: str) -> AdView:
    return AdView(ldap_conn, test_ou)


@pytest.fixture
def fresh_id() -> Iterator[str]:
    yield uuid.uuid4().hex[:6]
