"""The Graph emulator of the sandbox, run as its own process (``python -m writeback.testbed.emulator serve``).

Contract with the emulator: it listens on the port it is given (0 = any free port) and, once it listens,
writes DATA_DIR/emulator.json (mode 0600) = {graph_url, authority, ca_file, tenant_id, client_id, client_secret,
admin_token, data_dir, pid, port}. It listens on 127.0.0.1 (the default: the sandbox passes no --host).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from writeback.errors import SandboxError
from writeback.testbed.sandbox import processes
from writeback.testbed.sandbox.layout import SandboxPaths

MODULE = "writeback.testbed.emulator"
START_TIMEOUT = 60.0


def emulator_available() -> bool:
    """True when this installation has the emulator (``python -m writeback.testbed.emulator`` can run)."""
    try:
        return importlib.util.find_spec(f"{MODULE}.__main__") is not None
    except ModuleNotFoundError:
        return False


def running_pid(paths: SandboxPaths) -> int | None:
    return processes.read_pid(paths.emulator_pid_file)


def read_endpoint(paths: SandboxPaths) -> dict[str, Any] | None:
    """emulator.json of a running emulator, or None."""
    try:
        data = json.loads(paths.emulator_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start(paths: SandboxPaths, tenant_file: Path, port: int = 0) -> dict[str, Any]:
    """Start the emulator for ``tenant_file`` on ``port`` (0: a free one) and wait for its emulator.json."""
    paths.emulator_dir.mkdir(parents=True, exist_ok=True)
    paths.emulator_json.unlink(missing_ok=True)  # a stale one would be taken for the new process's
    argv = [
        sys.executable, "-m", MODULE, "serve",
        "--tenant", str(tenant_file),
        "--port", str(port),
        "--data-dir", str(paths.emulator_dir),
    ]  # fmt: skip
    processes.start_detached(
        argv, log_file=paths.emulator_log, pid_file=paths.emulator_pid_file, cwd=paths.root
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        endpoint = read_endpoint(paths)
        if endpoint and endpoint.get("graph_url"):
            return endpoint
        if running_pid(paths) is None:
            raise SandboxError(
                f"the Graph emulator exited during startup; last lines of {paths.emulator_log}:\n"
                f"{processes.log_tail(paths.emulator_log)}"
            )
        time.sleep(0.1)
    stop(paths)
    raise SandboxError(
        f"the Graph emulator did not write {paths.emulator_json} within {START_TIMEOUT:.0f} s; last lines of "
        f"{paths.emulator_log}:\n{processes.log_tail(paths.emulator_log)}"
    )


def stop(paths: SandboxPaths) -> bool:
    return processes.stop(paths.emulator_pid_file)
