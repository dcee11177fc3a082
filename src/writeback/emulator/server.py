"""Running the emulator: HTTPS with uvicorn, in the foreground (``serve``) or in a thread (:mod:`.testing`).

Readiness is announced by writing ``DATA_DIR/emulator.json`` (atomically) only once the socket listens,
so a launcher that waits for the file never races the server. The socket is bound here, not by uvicorn,
so port 0 yields the real port before anyone reads it.
"""

from __future__ import annotations

import argparse
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

from writeback.emulator.app import build_app
from writeback.emulator.delta import DeltaSettings
from writeback.emulator.state import EmulatorState
from writeback.emulator.tenant import Tenant
from writeback.errors import WritebackError
from writeback.tlsutil import ServerCert, ensure_server_cert

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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            write_json_atomic(self.info_path, self.info)

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
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    graph_url = f"https://{url_host}:{real_port}"
    app = ensure_app(state.tenant)
    info = {
        "graph_url": graph_url,
        "authority": f"{graph_url}/{state.tenant.tenant_id}",
        "ca_file": str(cert.ca_file),
        "tenant_id": state.tenant.tenant_id,
        "client_id": str(app["client_id"]),
        "client_secret": str(app["client_secret"]),
        "pid": os.getpid(),
        "port": real_port,
    }
    config = uvicorn.Config(
        build_app(state),
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


def serve(
    tenant_path: Path,
    port: int,
    data_dir: Path,
    host: str = "127.0.0.1",
    *,
    save_on_exit: bool = False,
    delta_settings: DeltaSettings | None = None,
    log_level: str = "warning",
) -> None:
    """Load the tenant and serve until SIGINT/SIGTERM. ``save_on_exit`` writes the state back to the file."""
    tenant = Tenant.load(tenant_path)
    state = EmulatorState.build(tenant, data_dir, save_path=tenant_path, delta_settings=delta_settings)
    info_path = data_dir / INFO_FILE
    info_path.unlink(missing_ok=True)  # a stale file from an earlier run must not look like readiness
    server, sock, info = make_server(state, host, port, log_level=log_level)
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
            tenant.save(tenant_path)


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Swallow the signal uvicorn re-raises once it has shut down (see :func:`serve`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """``serve --tenant FILE --port PORT --data-dir DIR [--host 127.0.0.1] [--save-on-exit]``."""
    parser = argparse.ArgumentParser(prog="writeback-emulator", description="Microsoft Graph emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve a tenant over HTTPS in the foreground")
    run.add_argument("--tenant", type=Path, required=True, help="tenant file (YAML or JSON)")
    run.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    run.add_argument("--data-dir", type=Path, required=True, help="TLS files, keys and emulator.json go here")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--save-on-exit", action="store_true", help="write the tenant back to --tenant on exit")
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
