"""Faults on demand (429, 503, dropped connections, latency), statistics, and the foreground server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from writeback.emulator.testing import (
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
            "writeback.emulator",
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
    saved = yaml.safe_load(tenant_file.read_text(encoding="utf-8"))
    assert [d["id"] for d in saved["deletedItems"]] == ["g2"]


def test_serve_reports_a_broken_tenant_file(tmp_path: Path) -> None:
    tenant_file = tmp_path / "tenant.json"
    tenant_file.write_text('{"apps": []}', encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "writeback.emulator",
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
