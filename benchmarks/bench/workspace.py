"""The benchmark's workspace: its config file for writeback, and how the engine and the service are started.

The engine always runs in a child process (``engine_child`` or ``writeback run``) with the interpreter of
this process, so its CPU time and memory are its own and never mixed with the emulator's or the harness's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from writeback.testbed.emulator.testing import EmulatorHandle
from writeback.testbed.sandbox import SandboxInfo
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.secretfiles import write_private

ROOT = Path(__file__).resolve().parents[2]


def _q(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


@dataclass(frozen=True)
class Workspace:
    """Files of one benchmark run (``dir``) and the OU where the engine writes (``engine_ou``)."""

    dir: Path
    engine_ou: str
    profile: bool = False
    base_dn: str | None = None  # the engine's target.base_dn when not engine_ou (scripts/bench users)
    extra_toml: str = ""  # further tables for the config (scripts/bench users: [users])
    stream_first_apply: bool = False  # [source] stream_first_apply (scripts/bench --stream-first-apply)

    @property
    def config(self) -> Path:
        return self.dir / "writeback.toml"

    @property
    def health_file(self) -> Path:
        return self.dir / "health.json"

    def write_config(self, info: SandboxInfo, emulator: EmulatorHandle, max_members: int) -> Path:
        """A writeback config: Graph = this run's emulator, AD = the sandbox DC, base and target = our OU.

        base_dn is the benchmark's own OU, so the engine never sees (or deletes) other people's groups.
        """
        secret = self.dir / "client_secret"
        write_private(secret, emulator.client_secret)
        lines = [
            "[source]",
            f"tenant_id = {_q(emulator.tenant_id)}",
            f"client_id = {_q(emulator.client_id)}",
            f"client_secret_file = {_q(secret)}",
            f"authority = {_q(emulator.authority)}",
            f"graph_url = {_q(emulator.graph_url)}",
            f"ca_file = {_q(emulator.ca_file)}",
            *(["stream_first_apply = true"] if self.stream_first_apply else []),
            "",
            "[target]",
            f"ldap_urls = [{_q(info.ldap_url)}]",
            f"gc_url = {_q(info.gc_url)}",
            f"bind_dn = {_q(info.bind_dn)}",
            f"bind_password_file = {_q(SandboxPaths(info.dir).bind_password_file)}",
            f"base_dn = {_q(self.base_dn or self.engine_ou)}",
            f"target_ou = {_q(self.engine_ou)}",
            f"ca_file = {_q(info.ca_file)}",
            "",
            "[members]",
            f"max_members = {max_members}",
            "",
            "[state]",
            f"path = {_q(self.dir / 'state.sqlite')}",
            "",
            "[service]",  # poll and reconcile intervals stay at their defaults
            f"health_file = {_q(self.health_file)}",
            self.extra_toml,
        ]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config


def child_env() -> dict[str, str]:
    """The environment of engine processes: ours, with the repository on the path for ``benchmarks``."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


@dataclass(frozen=True)
class EngineRun:
    """One measured apply: wall time seen from outside plus the child's own report."""

    wall_seconds: float
    report: dict[str, Any]

    @property
    def ldap(self) -> dict[str, int]:
        stats: dict[str, int] = self.report["ldap"]
        return stats

    @property
    def writes(self) -> int:
        return sum(self.ldap.get(k, 0) for k in ("add", "modify", "modrdn", "delete"))


class EngineFailed(RuntimeError):
    """An apply that did not succeed; ``run`` holds the child's figures when it got as far as reporting."""

    def __init__(self, message: str, label: str, run: EngineRun | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.run = run


def run_apply(
    workspace: Workspace,
    label: str,
    timeout: float = 7200.0,
    *,
    deep: bool = False,
    dc_pid: int | None = None,
) -> EngineRun:
    """One ``writeback apply`` (``--deep``: ``writeback apply --deep``) in a child process; raises RuntimeError
    if it fails.

    With ``workspace.profile`` set, the child writes ``<dir>/profile-<label>.pstats`` (cProfile). With ``dc_pid``
    (the Samba DC's) it reports the DC's CPU over its write phase (``dc_cpu_write_s``).
    """
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bench.engine_child",
        str(workspace.config),
        *(["--deep"] if deep else []),
    ]
    env = child_env()
    if workspace.profile:
        env["WRITEBACK_BENCH_PROFILE"] = str(workspace.dir / f"profile-{label}.pstats")
    if dc_pid is not None:
        env["WRITEBACK_BENCH_DC_PID"] = str(dc_pid)
    started = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise EngineFailed(f"the engine failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", label)
    report: dict[str, Any] = json.loads(lines[-1])
    run = EngineRun(wall, report)
    if proc.returncode != 0:
        reason = f"{report.get('aborted')} {report.get('failed')}"
        raise EngineFailed(f"the {label} apply did not succeed: {reason}", label, run)
    return run


def start_service(workspace: Workspace, log_file: Path) -> subprocess.Popen[bytes]:
    """``writeback run`` (the real CLI, default poll settings) in the background, logging to ``log_file``."""
    workspace.health_file.unlink(missing_ok=True)
    with open(log_file, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "writeback", "-c", str(workspace.config), "run"],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for_first_cycle(workspace: Workspace, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Block until the service reports a successful cycle in its health file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`writeback run` exited with {proc.returncode} before its first cycle")
        try:
            health = json.loads(workspace.health_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            health = {}
        if health.get("last_success"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"`writeback run` did not finish a cycle within {timeout:.0f} s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the service stops between two LDAP changes), SIGKILL if it does not within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
