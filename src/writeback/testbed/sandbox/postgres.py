"""The sandbox's PostgreSQL (`writeback sandbox up --postgres`): a private server for writeback's shared state.

Debian's ``postgresql`` package provides the programs (``/usr/lib/postgresql/<version>/bin``); the cluster is
the sandbox's own: its data in ``DIR/postgres/data``, listening on 127.0.0.1 only, on a port picked at
random the first time and kept, TLS only (``hostssl`` in pg_hba.conf, a certificate from the sandbox's own
CA), and a random password for the ``writeback`` role (scram-sha-256). sandbox.json's ``postgres_url`` says
how to reach it, without the password (writeback's config refuses one inside ``state.url``), and
``postgres_password_file`` where the password is (mode 0600).

PostgreSQL refuses to run as root, and the sandbox directory is root's and private (0700), so no other user
could even reach the data directory. The server therefore runs in a user namespace (``unshare --user``)
where root's uid is mapped to the unprivileged ``postgres`` uid: PostgreSQL sees itself running as a normal
user owning its data directory, while the kernel keeps checking file access as the sandbox owner's, so the
sandbox directory stays private.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

from writeback.errors import SandboxError
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.secretfiles import ensure_secret, write_private
from writeback.testbed.tlsutil import ensure_server_cert

USER = "writeback"
DATABASE = "writeback"
HOST = "127.0.0.1"


class PostgresPaths:
    def __init__(self, paths: SandboxPaths) -> None:
        self.root = paths.root / "postgres"
        self.data = self.root / "data"
        self.tls = self.root / "tls"
        self.port_file = self.root / "port"
        self.password_file = paths.secrets_dir / "postgres_password"
        self.log = paths.logs_dir / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name or 0)
    )
    if not found:
        raise SandboxError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); install Debian's package: "
            "apt-get install -y postgresql"
        )
    return found[-1].parent


def _namespace_uid() -> int:
    """The uid PostgreSQL sees itself as: the package's ``postgres`` user when there is one."""
    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return 65534  # nobody


def _as_db_user(argv: list[str]) -> list[str]:
    """``argv`` run as an unprivileged uid in a user namespace (see module docstring); as is when not root."""
    if os.geteuid() != 0:
        return argv
    uid = _namespace_uid()
    return ["unshare", "--user", f"--map-user={uid}", f"--map-group={uid}", *argv]


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(_as_db_user(argv), capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        hint = f"; see {log}" if log else ""
        raise SandboxError(f"PostgreSQL: {what} failed (exit {proc.returncode}): {tail}{hint}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def running_pid(paths: SandboxPaths) -> int | None:
    """The postmaster's pid when it runs (from its own postmaster.pid)."""
    pp = PostgresPaths(paths)
    try:
        pid = int(pp.pid_file.read_text(encoding="utf-8").split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"postgres" in cmdline else None


def _initdb(pp: PostgresPaths, password: str) -> None:
    pp.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    pwfile = pp.root / ".initdb-password"
    write_private(pwfile, password + "\n")
    try:
        _run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(pp.data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    cert = ensure_server_cert(pp.tls, "writeback sandbox PostgreSQL")
    port = _free_port()
    write_private(pp.port_file, f"{port}\n")
    # TLS only, from loopback only, password (SCRAM) only.
    (pp.data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8")
    (pp.data / "sandbox.conf").write_text(
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        "unix_socket_directories = ''\n"
        "ssl = on\n"
        f"ssl_cert_file = '{cert.cert_file}'\n"
        f"ssl_key_file = '{cert.key_file}'\n"
        "max_connections = 200\n"
        "fsync = off\n"  # a throwaway test database: speed over durability across power loss
        "log_min_messages = warning\n",
        encoding="utf-8",
    )
    with (pp.data / "postgresql.conf").open("a", encoding="utf-8") as fh:
        fh.write("\ninclude 'sandbox.conf'\n")


def url(paths: SandboxPaths, database: str = DATABASE) -> str:
    """The libpq URL of the sandbox's server with the password in it (TLS verified against the sandbox CA), for
    the test bed's own connections. A writeback config takes :func:`public_url` and :func:`password_file`."""
    password = PostgresPaths(paths).password_file.read_text(encoding="utf-8").strip()
    return _url(paths, database, f"{USER}:{quote(password, safe='')}")


def public_url(paths: SandboxPaths, database: str = DATABASE) -> str:
    """The libpq URL without the password: what sandbox.json's ``postgres_url`` and ``[state] url`` hold
    (writeback's config refuses a password inside ``state.url``; it reads ``state.password_file``)."""
    return _url(paths, database, USER)


def _url(paths: SandboxPaths, database: str, userinfo: str) -> str:
    pp = PostgresPaths(paths)
    port = int(pp.port_file.read_text(encoding="utf-8"))
    ca = pp.tls / "ca.pem"
    return (
        f"postgresql://{userinfo}@{HOST}:{port}/{database}?sslmode=verify-full&sslrootcert={quote(str(ca))}"
    )


def password_file(paths: SandboxPaths) -> Path:
    """The role's password, in a file of mode 0600 (``[state] password_file``)."""
    return PostgresPaths(paths).password_file


def start(paths: SandboxPaths) -> str:
    """Create (once) and start the server; returns ``postgres_url``. Running servers are left alone."""
    pp = PostgresPaths(paths)
    password = ensure_secret(pp.password_file, lambda: secrets.token_urlsafe(24))
    if not (pp.data / "PG_VERSION").exists():
        if pp.data.exists():
            raise SandboxError(
                f"{pp.data} exists but holds no PostgreSQL cluster (an interrupted first start?); remove it "
                "and run `writeback sandbox up --postgres` again"
            )
        _initdb(pp, password)
    if running_pid(paths) is None:
        pp.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # pg_ctl writes the server's log as the namespace's user: make the file first, private.
        fd = os.open(pp.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        _run(
            [str(bin_dir() / "pg_ctl"), "start", "-D", str(pp.data), "-l", str(pp.log), "-w", "-t", "60"],
            "start",
            pp.log,
        )
    _ensure_database(paths)
    return url(paths)


def _ensure_database(paths: SandboxPaths) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(url(paths, "postgres"), autocommit=True, connect_timeout=5) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                    return
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"PostgreSQL started but does not accept connections: {exc}; see "
                    f"{PostgresPaths(paths).log}"
                ) from exc
            time.sleep(0.3)


def reset_database(paths: SandboxPaths) -> None:
    """Drop and create again the ``writeback`` database: writeback's shared state back to empty (`sandbox
    reset`). Connections still open to it (a `writeback run` left running) are ended."""
    try:
        with psycopg.connect(url(paths, "postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.Error as exc:
        raise SandboxError(
            f"PostgreSQL: emptying the database {DATABASE} failed: {exc}; see {PostgresPaths(paths).log}"
        ) from exc


def stop(paths: SandboxPaths, *, timeout: float = 30.0) -> None:
    """Stop the server: a fast shutdown (SIGINT: clients are disconnected, work is saved), SIGQUIT after
    ``timeout``. https://www.postgresql.org/docs/current/server-shutdown.html"""
    pid = running_pid(paths)
    if pid is None:
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if running_pid(paths) is None:
                return
            time.sleep(0.1)
    raise SandboxError(f"PostgreSQL (pid {pid}) did not stop; see {PostgresPaths(paths).log}")
