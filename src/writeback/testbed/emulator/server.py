"""Running the emulator: HTTPS with uvicorn, in the foreground (``serve``) or in a thread (:mod:`.testing`).

It listens on 127.0.0.1 unless another address is given explicitly, and it writes files only inside its
data directory (TLS files, signing keys, the admin token, emulator.json, saved tenants).

``serve`` also takes a sandbox scenario (examples/sample-tenant.yaml) on its own, without a DC: its AD side
is made up (random objectSid / objectGUID for the synced users and groups), so anyone can try the emulator
with Microsoft's SDK in one command.

Readiness is announced by writing ``DATA_DIR/emulator.json`` (atomically) only once the socket listens,
so a launcher that waits for the file never races the server. The socket is bound here, not by uvicorn,
so port 0 yields the real port before anyone reads it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
import yaml

from writeback.errors import SandboxError, WritebackError
from writeback.testbed.emulator.admin import ADMIN_TOKEN_FILE
from writeback.testbed.emulator.app import build_app
from writeback.testbed.emulator.delta import DeltaSettings
from writeback.testbed.emulator.state import EmulatorState
from writeback.testbed.emulator.tenant import Tenant
from writeback.testbed.sandbox.secretfiles import new_client_secret, write_private
from writeback.testbed.sandbox.tenant import (
    Scenario,
    build_tenant,
    generated_accounts,
    is_scenario,
    write_tenant,
)
from writeback.testbed.tlsutil import ServerCert, ensure_server_cert

log = logging.getLogger("writeback.emulator")

INFO_FILE = "emulator.json"


def ensure_app(tenant: Tenant) -> dict[str, Any]:
    """The app registration launchers get credentials for: the first with a secret (one is added if none)."""
    with tenant.lock:
        for app in tenant.apps:
            if app.get("client_id") and app.get("client_secret"):
                return app
        app = {"client_id": str(uuid.uuid4()), "client_secret": secrets.token_urlsafe(32)}
        tenant.apps.append(app)
        return app


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Temp file + rename in the same directory: readers see no file or a complete one. Mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_path_for(tenant_path: Path, data_dir: Path) -> Path:
    """Where saving writes the tenant: the tenant file itself when it is inside ``data_dir``, else a file
    of the same name in ``data_dir`` (the emulator writes only inside its data directory)."""
    root = data_dir.resolve()
    resolved = tenant_path.resolve()
    return resolved if resolved.is_relative_to(root) else root / tenant_path.name


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it uvicorn's separate header and body writes meet Nagle + delayed ACK (40 ms per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class EmulatorServer(uvicorn.Server):
    """uvicorn's server, plus the readiness file written once listening."""

    def __init__(self, config: uvicorn.Config, info_path: Path, info: dict[str, Any]) -> None:
        super().__init__(config)
        self.info_path = info_path
        self.info = info
        self.announcement = ""  # printed to ``out`` once listening (the foreground ``serve`` sets it)
        self.out: Any = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            write_json_atomic(self.info_path, self.info)
            if self.announcement and self.out is not None:
                print(self.announcement, file=self.out, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Idle keep-alive TLS connections of clients (msal's requests session, httpx pools) would hold a
        # graceful shutdown for its whole timeout; an emulator has nothing worth draining.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets=sockets)


def make_server(
    state: EmulatorState, host: str, port: int, *, log_level: str = "warning"
) -> tuple[EmulatorServer, socket.socket, dict[str, Any]]:
    """Bind, build the app and uvicorn server; return them with the connection info (not yet written)."""
    cert: ServerCert = ensure_server_cert(state.data_dir / "tls", "graph-emulator")
    if not is_loopback(host):
        log.warning(
            "the Graph emulator listens on %s, reachable from other machines; its admin API still needs "
            "the admin token, but use a loopback address unless you need this",
            host,
        )
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    graph_url = f"https://{url_host}:{real_port}"
    app = ensure_app(state.tenant)
    # A new admin token at every start, kept only in files of mode 0600 (see writeback.testbed.emulator.admin).
    admin_token = secrets.token_urlsafe(32)
    write_private(state.data_dir / ADMIN_TOKEN_FILE, admin_token + "\n")
    info = {
        "graph_url": graph_url,
        "authority": f"{graph_url}/{state.tenant.tenant_id}",
        "ca_file": str(cert.ca_file),
        "tenant_id": state.tenant.tenant_id,
        "client_id": str(app["client_id"]),
        "client_secret": str(app["client_secret"]),
        "admin_token": admin_token,
        "data_dir": str(state.data_dir.resolve()),
        "pid": os.getpid(),
        "port": real_port,
    }
    config = uvicorn.Config(
        build_app(state, admin_token),
        ssl_certfile=str(cert.cert_file),
        ssl_keyfile=str(cert.key_file),
        http="h11",
        ws="none",
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        date_header=True,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=3,
    )
    return EmulatorServer(config, state.data_dir / INFO_FILE, info), sock, info


def prepare_tenant(tenant_path: Path, data_dir: Path) -> Path:
    """The tenant file to serve: ``tenant_path`` itself, or for a sandbox scenario (sample-tenant.yaml, no
    DC here) a tenant made from it with generated AD identifiers and a random client secret, written to
    DATA_DIR/tenant.yaml (mode 0600)."""
    try:
        text = tenant_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SandboxError(f"cannot read the tenant file {tenant_path}: {exc.strerror or exc}") from exc
    if "directory:" not in text and "sam:" not in text:
        return tenant_path  # a plain tenant file (big ones are JSON: not parsed twice)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SandboxError(f"{tenant_path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not is_scenario(document):
        return tenant_path
    if "tenant_id" not in document or not document.get("apps"):
        raise SandboxError(f"the scenario {tenant_path} needs tenant_id and at least one app")
    scenario = Scenario(document)
    target = data_dir / "tenant.yaml"
    write_tenant(target, build_tenant(scenario, generated_accounts(scenario), new_client_secret()))
    log.info("scenario %s: made a tenant with generated AD identifiers in %s", tenant_path, target)
    return target


def default_data_dir() -> Path:
    """A new private directory (mode 0700) for one run started without --data-dir."""
    return Path(tempfile.mkdtemp(prefix="writeback-emulator-"))


def announce(info: dict[str, Any], info_path: Path) -> str:
    """What ``serve`` prints once it listens: where the URLs, CA and credentials are (never the secrets)."""
    return "\n".join(
        [
            f"Graph emulator for tenant {info['tenant_id']} is ready.",
            f"  Graph URL:  {info['graph_url']}/v1.0   (and /beta)",
            f"  Authority:  {info['authority']}   (token endpoint: /oauth2/v2.0/token)",
            f"  CA file:    {info['ca_file']}   (trust it in your client, e.g. REQUESTS_CA_BUNDLE)",
            f"  Client id:  {info['client_id']}",
            f"  Client secret and admin token: in {info_path} (mode 0600), keys client_secret, admin_token",
            "Stop with Ctrl+C.",
        ]
    )


def serve(
    tenant_path: Path,
    port: int,
    data_dir: Path | None = None,
    host: str = "127.0.0.1",
    *,
    save_on_exit: bool = False,
    delta_settings: DeltaSettings | None = None,
    log_level: str = "warning",
    out: Any = None,
) -> None:
    """Load the tenant and serve until SIGINT/SIGTERM. ``save_on_exit`` writes the state back to the tenant
    file when it is inside ``data_dir``, else to a file of that name in ``data_dir``."""
    data_dir = data_dir if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = prepare_tenant(tenant_path, data_dir)
    tenant = Tenant.load(source)
    save_path = save_path_for(source, data_dir)
    state = EmulatorState.build(tenant, data_dir, save_path=save_path, delta_settings=delta_settings)
    info_path = data_dir / INFO_FILE
    info_path.unlink(missing_ok=True)  # a stale file from an earlier run must not look like readiness
    server, sock, info = make_server(state, host, port, log_level=log_level)
    server.announcement = announce(info, info_path)
    server.out = out if out is not None else sys.stdout
    log.info("Graph emulator for tenant %s on %s", tenant.tenant_id, info["graph_url"])
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown so the default action kills the process;
    # with no-op handlers underneath, that re-raise returns here and the cleanup below runs (exit 0).
    previous = {sig: signal.signal(sig, _after_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        info_path.unlink(missing_ok=True)
        if save_on_exit:
            tenant.save(save_path)


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Swallow the signal uvicorn re-raises once it has shut down (see :func:`serve`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """``serve --tenant FILE [--port PORT] [--data-dir DIR] [--host 127.0.0.1] [--save-on-exit]``."""
    parser = argparse.ArgumentParser(prog="writeback-emulator", description="Microsoft Graph emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve a tenant over HTTPS in the foreground")
    run.add_argument(
        "--tenant",
        type=Path,
        required=True,
        help="tenant file (YAML or JSON) or a sandbox scenario such as examples/sample-tenant.yaml",
    )
    run.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="TLS files, keys, admin token and emulator.json go here (default: a new private temp directory)",
    )
    run.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)"
    )
    run.add_argument(
        "--save-on-exit",
        action="store_true",
        help="save the tenant on exit: to --tenant if it is inside --data-dir, else to DATA_DIR/<its name>",
    )
    run.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        serve(
            args.tenant,
            args.port,
            args.data_dir,
            args.host,
            save_on_exit=args.save_on_exit,
            log_level=args.log_level,
        )
    except (WritebackError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    return 0
