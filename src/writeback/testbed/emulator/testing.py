"""``run_emulator``: a real HTTPS emulator on a free loopback port, in a background thread, for tests.

The handle gives the connection facts a client needs (``graph_url``, ``authority``, ``ca_file``, app
credentials) and lets the test play the cloud administrator: :meth:`EmulatorHandle.graph` makes an
authenticated Graph call with its own token; :meth:`EmulatorHandle.admin` drives the ``/_emulator`` API
(faults, forced resync, token lifetime, raw edits). ``handle.tenant`` is the live state, for assertions.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from writeback.errors import SandboxError
from writeback.testbed.emulator.delta import DeltaSettings
from writeback.testbed.emulator.rules_hook import RuleCompiler
from writeback.testbed.emulator.server import EmulatorServer, make_server, save_path_for, write_json_atomic
from writeback.testbed.emulator.state import EmulatorState
from writeback.testbed.emulator.tenant import Tenant

START_TIMEOUT = 30.0


@dataclass
class EmulatorHandle:
    graph_url: str
    authority: str
    ca_file: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    admin_token: str = field(repr=False)
    state: EmulatorState
    data_dir: Path
    _client: httpx.Client = field(repr=False)
    _token: tuple[str, float] | None = field(default=None, repr=False)

    @property
    def tenant(self) -> Tenant:
        return self.state.tenant

    @property
    def port(self) -> int:
        return int(self.graph_url.rsplit(":", 1)[1])

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the emulator's test CA (httpx wants a context, not a path)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = jsonlib.loads((self.data_dir / "emulator.json").read_text(encoding="utf-8"))
        return info

    # ---------------------------------------------------------------- cloud administrator

    def token(self) -> str:
        """An access token for the handle's app (client secret), cached until shortly before expiry."""
        if self._token is not None and self._token[1] > time.time() + 1:
            return self._token[0]
        response = self._client.post(
            f"/{self.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        response.raise_for_status()
        body = response.json()
        self._token = (str(body["access_token"]), time.time() + float(body["expires_in"]))
        return self._token[0]

    def graph(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated Graph call. ``path`` is '/v1.0/…', '/beta/…', 'users' (→ /v1.0/users) or a URL."""
        if path.startswith("https://") or path.startswith(("/v1.0/", "/beta/")):
            url = path
        else:
            url = "/v1.0/" + path.lstrip("/")
        all_headers = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
        return self._client.request(method, url, json=json, params=params, headers=all_headers)

    def admin(self, path: str, json: Any = None, *, method: str | None = None) -> Any:
        """Call the admin API (POST when ``json`` is given, else GET); returns the decoded JSON."""
        url = "/_emulator/" + path.lstrip("/").removeprefix("_emulator/")
        verb = method or ("POST" if json is not None else "GET")
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        response = self._client.request(verb, url, json=json, headers=headers)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """E.g. ``set_faults(throttle_ratio=0.3, retry_after="0.5")``; ``set_faults(reset=True)`` clears."""
        result: dict[str, Any] = self.admin("faults", settings)
        return result

    def force_resync(self) -> None:
        """Outstanding delta tokens now answer 410 Gone."""
        self.admin("resync", {})

    def set_token_lifetime(self, seconds: int | None) -> None:
        self.admin("faults", {"token_lifetime": seconds})

    def set_delta_settings(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("delta-settings", settings)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("stats")
        return result

    def save(self, path: Path | None = None) -> Path:
        result = self.admin("save", {"path": str(path)} if path else {})
        return Path(result["path"])


def _load_tenant(
    tenant: Path | Mapping[str, Any] | Tenant, data_dir: Path, rules: RuleCompiler | None
) -> tuple[Tenant, Path | None]:
    if isinstance(tenant, Tenant):
        return tenant, None
    if isinstance(tenant, Path):
        return Tenant.load(tenant, rule_compiler=rules), save_path_for(tenant, data_dir)
    path = data_dir / "tenant.json"
    write_json_atomic(path, dict(tenant))
    return Tenant.from_dict(tenant, source=str(path), rule_compiler=rules), path


@contextlib.contextmanager
def run_emulator(
    tenant: Path | Mapping[str, Any] | Tenant,
    data_dir: Path,
    *,
    delta_settings: DeltaSettings | None = None,
    rule_compiler: RuleCompiler | None = None,
    host: str = "127.0.0.1",
) -> Iterator[EmulatorHandle]:
    """Serve ``tenant`` (a file, a tenant-file dict, or a :class:`Tenant`) until the block ends.

    A dict is written to ``data_dir/tenant.json`` first, which is also where ``save()`` writes by default.
    ``rule_compiler`` replaces the dynamic-membership evaluator (default: ``writeback.core.rules`` if present).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    loaded, save_path = _load_tenant(tenant, data_dir, rule_compiler)
    state = EmulatorState.build(loaded, data_dir, save_path=save_path, delta_settings=delta_settings)
    server, sock, info = make_server(state, host, 0)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="graph-emulator", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        client = httpx.Client(
            base_url=info["graph_url"],
            verify=ssl.create_default_context(cafile=info["ca_file"]),
            timeout=60.0,
        )
        handle = EmulatorHandle(
            graph_url=info["graph_url"],
            authority=info["authority"],
            ca_file=info["ca_file"],
            tenant_id=info["tenant_id"],
            client_id=info["client_id"],
            client_secret=info["client_secret"],
            admin_token=info["admin_token"],
            state=state,
            data_dir=data_dir,
            _client=client,
        )
        try:
            yield handle
        finally:
            client.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _wait_started(server: EmulatorServer, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            raise SandboxError("the Graph emulator thread stopped during startup (see the log)")
        if time.monotonic() > deadline:
            raise SandboxError(f"the Graph emulator did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.01)


TEST_TENANT_ID = "11111111-2222-3333-4444-555555555555"
TEST_CLIENT_ID = "00000000-aaaa-bbbb-cccc-000000000001"
TEST_CLIENT_SECRET = "test-secret-value"  # a fixture value, not a credential


def small_tenant(users: int = 10, groups: int = 3, *, certificates: tuple[str, ...] = ()) -> dict[str, Any]:
    """A small tenant-file dict for tests: synced and cloud-only users, security groups with members.

    Users are ``u00``…, groups ``g0``…; ``g0`` holds the first half of the users, ``g1`` holds ``g2``
    (nesting); ids are readable on purpose (Graph uses GUIDs, the emulator does not care).
    """
    user_list = [
        {
            "id": f"u{i:02d}",
            "userPrincipalName": f"user{i:02d}@corp.example.test",
            "displayName": f"User {i:02d}",
            "accountEnabled": True,
            "department": "HR" if i % 2 else "IT",
            "jobTitle": "Engineer",
            "mail": f"user{i:02d}@corp.example.test",
            "onPremisesSyncEnabled": True if i % 3 == 0 else None,
            "onPremisesSecurityIdentifier": f"S-1-5-21-1-2-3-{1100 + i}" if i % 3 == 0 else None,
        }
        for i in range(users)
    ]
    group_list: list[dict[str, Any]] = [
        {
            "id": f"g{g}",
            "displayName": f"Group {g}",
            "description": f"test group {g}",
            "mailNickname": f"group{g}",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": [],
        }
        for g in range(groups)
    ]
    if group_list:
        group_list[0]["members"] = [u["id"] for u in user_list[: users // 2]]
    if len(group_list) > 2:
        group_list[1]["members"] = ["g2", *(u["id"] for u in user_list[-2:])]
        group_list[2]["members"] = [user_list[0]["id"]] if user_list else []
    app: dict[str, Any] = {"client_id": TEST_CLIENT_ID, "client_secret": TEST_CLIENT_SECRET}
    if certificates:
        app["certificates"] = list(certificates)
    return {"tenant_id": TEST_TENANT_ID, "apps": [app], "users": user_list, "groups": group_list}
