"""Faults on demand (429, 503, dropped connections, latency), statistics, and the foreground server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from writeback.testbed.emulator.server import ADMIN_TOKEN_FILE
from writeback.testbed.emulator.testing import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    EmulatorHandle,
    run_emulator,
    small_tenant,
)

pytestmark = pytest.mark.emulator


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(small_tenant(), tmp_path) as handle:
        handle.token()  # before any fault: the token endpoint is never faulted anyway
        yield handle


def test_throttled_request_carries_fractional_retry_after(emu: EmulatorHandle) -> None:
    emu.set_faults(throttle_next=1, retry_after="0.5")
    throttled = emu.graph("GET", "users", headers={"client-request-id": "abc-123"})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0.5"
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["message"] == "Please retry again later."
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert emu.graph("GET", "users").status_code == 200  # only the next one


def test_throttle_ratio_and_path_filter(emu: EmulatorHandle) -> None:
    emu.set_faults(throttle_ratio=1.0, path_contains="/delta")
    assert emu.graph("GET", "users").status_code == 200
    assert emu.graph("GET", "users/delta").status_code == 429
    emu.set_faults(reset=True)
    assert emu.graph("GET", "users/delta").status_code == 200


def test_throttling_does_not_consume_a_delta_page(emu: EmulatorHandle) -> None:
    emu.set_delta_settings(page_size=4)
    first = emu.graph("GET", "users/delta").json()
    emu.set_faults(throttle_next=2)
    assert emu.graph("GET", first["@odata.nextLink"]).status_code == 429
    assert emu.graph("GET", first["@odata.nextLink"]).status_code == 429
    page = emu.graph("GET", first["@odata.nextLink"]).json()
    assert [u["id"] for u in page["value"]] == ["u04", "u05", "u06", "u07"]


def test_503_with_retry_after(emu: EmulatorHandle) -> None:
    emu.set_faults(error_503_next=1, retry_after="2.128")
    response = emu.graph("GET", "groups")
    assert response.status_code == 503 and response.headers["Retry-After"] == "2.128"
    assert response.json()["error"]["code"] == "ServiceUnavailable"


def test_dropped_connection_has_no_response(emu: EmulatorHandle) -> None:
    emu.set_faults(drop_next=1)
    with pytest.raises(httpx.TransportError):
        emu.graph("GET", "groups")
    assert emu.graph("GET", "groups").status_code == 200
    assert emu.stats()["outcomes"]["dropped"] == 1


def test_latency(emu: EmulatorHandle) -> None:
    emu.set_faults(latency_ms=300)
    started = time.monotonic()
    assert emu.graph("GET", "groups").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_validate_their_input(emu: EmulatorHandle) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        emu.set_faults(throttle_ratio=2)
    with pytest.raises(httpx.HTTPStatusError):
        emu.set_faults(latency_ms="slow")


def test_stats_count_requests_by_kind(emu: EmulatorHandle) -> None:
    emu.admin("stats", {"reset": True})
    emu.graph("GET", "users")
    emu.graph("GET", "groups/g0/members")
    emu.graph("GET", "groups/delta")
    emu.graph("GET", "groups/5f0c7e7a-0000-4000-8000-00000000dead")  # well-formed, unknown: 404
    stats = emu.stats()
    assert stats["requests"]["users"] == 1
    assert stats["requests"]["members"] == 1
    assert stats["requests"]["delta"] == 1
    assert stats["outcomes"]["404"] == 1
    assert stats["tenant"]["users"] == 10


def test_serve_in_the_foreground_writes_emulator_json(tmp_path: Path) -> None:
    tenant_file = tmp_path / "tenant.yaml"
    tenant_file.write_text(yaml.safe_dump(small_tenant()), encoding="utf-8")
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "writeback.testbed.emulator",
            "serve",
            "--tenant",
            str(tenant_file),
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--save-on-exit",
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        info_file = data_dir / "emulator.json"
        deadline = time.monotonic() + 30
        while not info_file.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "emulator.json did not appear"
            time.sleep(0.05)
        info = json.loads(info_file.read_text(encoding="utf-8"))
        assert info["pid"] == process.pid and info["port"] > 0
        assert info["graph_url"] == f"https://127.0.0.1:{info['port']}"
        assert info["authority"] == f"{info['graph_url']}/{info['tenant_id']}"
        assert (info["client_id"], info["client_secret"]) == (TEST_CLIENT_ID, TEST_CLIENT_SECRET)
        import ssl

        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"])) as client:
            token = client.post(
                f"{info['authority']}/oauth2/v2.0/token",
                data={
                    "client_id": info["client_id"],
                    "client_secret": info["client_secret"],
                    "grant_type": "client_credentials",
                    "scope": "https://graph.microsoft.com/.default",
                },
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            response = client.delete(f"{info['graph_url']}/v1.0/groups/g2", headers=headers)
            assert response.status_code == 204
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    assert not (data_dir / "emulator.json").exists()
    # The tenant file is outside the data directory: it is left alone, the save goes into the data dir.
    assert "deletedItems" not in yaml.safe_load(tenant_file.read_text(encoding="utf-8"))
    saved = yaml.safe_load((data_dir / tenant_file.name).read_text(encoding="utf-8"))
    assert [d["id"] for d in saved["deletedItems"]] == ["g2"]


def test_serve_reports_a_broken_tenant_file(tmp_path: Path) -> None:
    tenant_file = tmp_path / "tenant.json"
    tenant_file.write_text('{"apps": []}', encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "writeback.testbed.emulator",
            "serve",
            "--tenant",
            str(tenant_file),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tenant_id" in result.stderr


# --- the admin API is not open to every local user -------------------------------------------------------

ADMIN_PATHS = [
    ("GET", "/_emulator/health", None),
    ("GET", "/_emulator/faults", None),
    ("POST", "/_emulator/faults", {"reset": True}),
    ("GET", "/_emulator/tenant", None),
    ("POST", "/_emulator/save", {"path": "x.yaml"}),
    ("POST", "/_emulator/members", {"group": "g0", "add": ["u09"]}),
    ("POST", "/_emulator/objects/groups", {"displayName": "sneaked in"}),
    ("DELETE", "/_emulator/objects/groups/g1?hard=1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_PATHS)
def test_admin_api_refuses_a_missing_or_wrong_token(
    emu: EmulatorHandle, method: str, path: str, body: object
) -> None:
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context()) as client:
        before = emu.tenant.to_dict()
        graph_token = emu.token()
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Bearer {emu.admin_token}x"},
            {"Authorization": f"Basic {emu.admin_token}"},
            # A Graph access token of the tenant's own app is not an admin token.
            {"Authorization": f"Bearer {graph_token}"},
        ):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (headers.keys(), response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
            assert emu.admin_token not in response.text
        assert emu.tenant.to_dict() == before, "a refused admin call changed the tenant"
    assert not (emu.data_dir / "x.yaml").exists()


def test_admin_api_works_with_the_token_kept_in_private_files(emu: EmulatorHandle) -> None:
    info = emu.info()
    token_file = emu.data_dir / ADMIN_TOKEN_FILE
    assert info["admin_token"] == emu.admin_token == token_file.read_text().strip()
    for private in (token_file, emu.data_dir / "emulator.json"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context()) as client:
        headers = {"Authorization": f"Bearer {emu.admin_token}"}
        response = client.post("/_emulator/members", json={"group": "g0", "add": ["u09"]}, headers=headers)
        assert response.status_code == 200, response.text
    assert "u09" in emu.tenant.members["g0"]
    # The admin token opens no Graph route.
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context()) as client:
        graph = client.get("/v1.0/users", headers={"Authorization": f"Bearer {emu.admin_token}"})
    assert graph.status_code == 401


# --- tenant files only inside the data directory ---------------------------------------------------------


def test_save_writes_only_inside_the_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    with run_emulator(small_tenant(), data_dir) as emu:
        (data_dir / "link").symlink_to(outside)
        for requested in (
            str(outside / "t.yaml"),
            "../outside/t.yaml",
            "link/t.yaml",
            "/etc/writeback-emulator-test.yaml",
            str(data_dir),
        ):
            response = emu._client.post(
                "/_emulator/save",
                json={"path": requested},
                headers={"Authorization": f"Bearer {emu.admin_token}"},
            )
            assert response.status_code == 400, requested
            assert "only inside its data directory" in response.json()["error"]["message"]
        assert list(outside.iterdir()) == []
        assert not Path("/etc/writeback-emulator-test.yaml").exists()
        assert emu.save(Path("kept.yaml")) == (data_dir / "kept.yaml").resolve()
        assert emu.save(data_dir / "sub.json").parent == data_dir.resolve()
    assert (data_dir / "kept.yaml").is_file() and (data_dir / "sub.json").is_file()


def test_default_save_of_a_tenant_file_outside_the_data_dir_lands_in_the_data_dir(tmp_path: Path) -> None:
    tenant_file = tmp_path / "tenant.yaml"
    tenant_file.write_text(yaml.safe_dump(small_tenant()), encoding="utf-8")
    original = tenant_file.read_text(encoding="utf-8")
    with run_emulator(tenant_file, tmp_path / "data") as emu:
        emu.graph("DELETE", "groups/g2")
        assert emu.save() == (tmp_path / "data" / "tenant.yaml").resolve()
    assert tenant_file.read_text(encoding="utf-8") == original


# --- loopback by default ----------------------------------------------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    """The local addresses the kernel has a TCP listener on for ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                    found.add(address)
    return found


def _start_serve(argv: list[str], **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    return subprocess.Popen(
        [sys.executable, "-m", "writeback", "emulator", "serve", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[arg-type]
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_info(process: subprocess.Popen[str], info_file: Path) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while not info_file.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "emulator.json did not appear"
        time.sleep(0.05)
    info: dict[str, object] = json.loads(info_file.read_text(encoding="utf-8"))
    return info


def test_serve_listens_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    tenant_file = tmp_path / "tenant.yaml"
    tenant_file.write_text(yaml.safe_dump(small_tenant()), encoding="utf-8")
    process = _start_serve(["--tenant", str(tenant_file), "--data-dir", str(tmp_path / "d")])
    try:
        info = _wait_for_info(process, tmp_path / "d" / "emulator.json")
        port = int(str(info["port"]))
        # 127.0.0.1 in /proc/net/tcp's little-endian hex; no wildcard (00000000) or other address.
        assert _listening_addresses(port) == {"0100007F"}
        assert info["graph_url"] == f"https://127.0.0.1:{port}"
    finally:
        _stop(process)


# --- `writeback emulator serve` on the sample scenario, without a DC -------------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-tenant.yaml"


def test_standalone_serve_of_the_sample_scenario_works_with_msal(tmp_path: Path) -> None:
    import msal
    import requests

    process = _start_serve(["--tenant", str(SAMPLE)], cwd=tmp_path)
    data_dir: Path | None = None
    try:
        assert process.stdout is not None
        lines = []
        while not any("admin token: in" in line for line in lines):
            line = process.stdout.readline()
            assert line, (
                f"serve exited: {process.wait(timeout=10)} {process.stderr.read() if process.stderr else ''}"
            )
            lines.append(line)
        printed = "".join(lines)
        match = re.search(r"admin token: in (\S+emulator\.json)", printed)
        assert match, printed
        info_file = Path(match.group(1))
        data_dir = info_file.parent
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        info = json.loads(info_file.read_text(encoding="utf-8"))
        assert info["graph_url"] in printed and info["ca_file"] in printed and info["authority"] in printed
        assert info["client_secret"] not in printed and info["admin_token"] not in printed
        assert info["client_secret"] != "sample-secret-replaced-by-sandbox-up"

        # Microsoft's SDK (msal), unchanged, against the printed authority and CA (trusted by its session).
        session = requests.Session()
        session.verify = info["ca_file"]
        session.trust_env = False  # else requests lets $REQUESTS_CA_BUNDLE override session.verify
        app = msal.ConfidentialClientApplication(
            info["client_id"],
            client_credential=info["client_secret"],
            authority=info["authority"],
            http_client=session,
            instance_discovery=False,
        )
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert "access_token" in result, result
        trust = ssl.create_default_context(cafile=info["ca_file"])
        headers = {"Authorization": f"Bearer {result['access_token']}"}
        with httpx.Client(base_url=info["graph_url"], verify=trust, headers=headers) as client:
            groups = client.get("/v1.0/groups", params={"$select": "id,displayName,onPremisesSyncEnabled"})
            assert groups.status_code == 200, groups.text
            names = {g["displayName"] for g in groups.json()["value"]}
            assert {"SG-NL-Finance-Department", "DSG-AVD-PUBAPP-SAP", "GG-Legacy-Fileshare"} <= names
            users = client.get(
                "/v1.0/users",
                params={
                    "$select": "id,onPremisesSecurityIdentifier,onPremisesImmutableId,onPremisesSamAccountName"
                },
            ).json()["value"]
            synced = [u for u in users if u.get("onPremisesSamAccountName")]  # synced, or SOA-converted
            assert len(synced) == 14
            sids = [u["onPremisesSecurityIdentifier"] for u in synced]
            assert all(re.fullmatch(r"S-1-5-21-\d+-\d+-\d+-\d+", sid) for sid in sids)
            assert len(set(sids)) == len(sids) and len({u["onPremisesImmutableId"] for u in synced}) == 14
            legacy = next(g for g in groups.json()["value"] if g["displayName"] == "GG-Legacy-Fileshare")
            members = client.get(f"/v1.0/groups/{legacy['id']}/members").json()["value"]
            assert len(members) == 3
    finally:
        _stop(process)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
