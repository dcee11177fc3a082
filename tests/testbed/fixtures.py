"""Session-wide sandbox, per-test LDAP connection and per-test OU.

Exactly one DC serves a test session. A developer keeps one running and points tests at it with
``WRITEBACK_SANDBOX_DIR`` (several sessions, by several people, may share it at the same time); otherwise the
session brings a small one up in a temporary directory and takes it down at the end. Tests isolate their
objects in their own ``OU=t-<hex>`` (the ``test_ou`` fixture), never in the shared OUs.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import ldap
import psycopg
import pytest
from psycopg import sql

from writeback.adapters.directory import DirectorySettings
from writeback.errors import SandboxError
from writeback.testbed.sandbox import (
    SandboxInfo,
    load_info,
    sandbox_down,
    sandbox_status,
    sandbox_up,
    serviceaccount,
)
from writeback.testbed.sandbox import postgres as sandbox_postgres
from writeback.testbed.sandbox.layout import SandboxPaths
from writeback.testbed.sandbox.ldapconn import delete_subtree

ENV_DIR = "WRITEBACK_SANDBOX_DIR"
SESSION_USERS = 30


def _reuse(directory: Path) -> SandboxInfo | None:
    """The info of the sandbox in ``directory`` if its DC runs; starts its emulator when that is missing, and
    completes a sandbox made by an older version (no service account or admin token yet)."""
    status = sandbox_status(directory)
    if not status.dc_running:
        return None
    info = load_info(directory)
    if not status.up or info.service_bind_dn is None or (info.graph_url and not info.emulator_admin_token):
        # If the emulator fails, the DC still serves; tests that need the emulator say so (`sandbox_graph`).
        with contextlib.suppress(SandboxError):
            sandbox_up(directory, users=info.users)
    return load_info(directory)


def _bring_up(directory: Path) -> SandboxInfo:
    try:
        return sandbox_up(directory, users=SESSION_USERS)
    except SandboxError as exc:
        if sandbox_status(directory).dc_running:
            return load_info(directory)  # DC up, emulator not: DC tests can still run
        pytest.fail(f"cannot bring up a sandbox for this test session: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInfo]:
    """The running sandbox (see module docstring): reused from $WRITEBACK_SANDBOX_DIR or made for the session."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        info = _reuse(Path(configured))
        if info is not None:
            yield info
            return
    directory = tmp_path_factory.mktemp("sandbox")
    info = _bring_up(directory)
    try:
        yield info
    finally:
        sandbox_down(directory)


@pytest.fixture
def sandbox_graph(sandbox: SandboxInfo) -> SandboxInfo:
    """The sandbox, for tests that also need the Graph emulator: fails clearly when it does not run."""
    if not sandbox.graph_url:
        pytest.fail(
            f"the Graph emulator of the sandbox in {sandbox.dir} is not running; see "
            f"{sandbox.dir}/logs/emulator.log and run `writeback sandbox up --dir {sandbox.dir}`",
            pytrace=False,
        )
    return sandbox


def connect(info: SandboxInfo, *, as_service: bool = False) -> Any:
    """A python-ldap connection over LDAPS, validating the DC against the sandbox CA, bound as Administrator
    (or as the sandbox's least-privileged service account)."""
    if as_service:
        assert info.service_bind_dn and info.service_bind_password, "the sandbox has no service account"
    conn = ldap.initialize(info.ldap_url)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(info.ca_file))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    if as_service:
        conn.simple_bind_s(info.service_bind_dn, info.service_bind_password)
    else:
        conn.simple_bind_s(info.bind_dn, info.bind_password)
    return conn


@pytest.fixture
def ldap_conn(sandbox: SandboxInfo) -> Iterator[Any]:
    conn = connect(sandbox)
    try:
        yield conn
    finally:
        conn.unbind_s()


@pytest.fixture
def test_ou(sandbox: SandboxInfo) -> Iterator[str]:
    """A fresh, unique OU=t-<hex> under the base DN for one test's objects; deleted with its subtree after."""
    conn = connect(sandbox)
    dn = f"OU=t-{uuid.uuid4().hex[:12]},{sandbox.base_dn}"
    try:
        conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"])])
        yield dn
    finally:
        try:
            delete_subtree(conn, dn)
        finally:
            conn.unbind_s()


def delegate_to_service_account(sandbox: SandboxInfo, ou_dn: str) -> None:
    """Give the sandbox's service account, on ``ou_dn``, the delegation it has on the sandbox's target OU
    (docs/least-privilege.md): the one helper for tests that run the writeback CLI or engine on their own
    OU, so they run with production's rights, not Administrator's."""
    if not sandbox.service_bind_dn or not sandbox.service_sid:
        pytest.fail(
            f"the sandbox in {sandbox.dir} has no service account; run `writeback sandbox up --dir "
            f"{sandbox.dir}` with this version",
            pytrace=False,
        )
    conn = connect(sandbox)
    try:
        serviceaccount.delegate(
            conn,
            smb_conf=SandboxPaths(sandbox.dir).smb_conf,
            ldap_url=sandbox.starttls_url,
            base_dn=sandbox.base_dn,
            admin_password=sandbox.bind_password,
            ou_dn=ou_dn,
            sid=sandbox.service_sid,
        )
    finally:
        conn.unbind_s()


def connect_as_service(info: SandboxInfo) -> Any:
    """A python-ldap connection bound as the sandbox's least-privileged service account over LDAPS."""
    return connect(info, as_service=True)


def directory_settings(info: SandboxInfo, **overrides: Any) -> DirectorySettings:
    """writeback's LDAP adapter settings for the sandbox DC, bound as Administrator (adapter tests)."""
    values: dict[str, Any] = {
        "urls": (info.ldap_url,),
        "bind_dn": info.bind_dn,
        "bind_password": info.bind_password,
        "base_dn": info.base_dn,
        "ca_file": str(info.ca_file),
    }
    values.update(overrides)
    return DirectorySettings(**values)


# -- PostgreSQL (the shared state of high availability) ----------------------------------------------------------


@dataclass
class PostgresServer:
    """A running PostgreSQL of the test bed (:mod:`writeback.testbed.sandbox.postgres`) and its controls."""

    paths: SandboxPaths

    @property
    def url(self) -> str:
        return sandbox_postgres.url(self.paths)

    def database_url(self, name: str) -> str:
        return sandbox_postgres.url(self.paths, name)

    def stop(self) -> None:
        sandbox_postgres.stop(self.paths)

    def start(self) -> None:
        sandbox_postgres.start(self.paths)

    @property
    def running(self) -> bool:
        return sandbox_postgres.running_pid(self.paths) is not None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session, brought up when needed: the one of the developer's sandbox in
    $WRITEBACK_SANDBOX_DIR (started there if it is not running), else one of its own in a temporary directory,
    stopped at the end. It needs no DC, so unit tests of the stores use it too."""
    configured = os.environ.get(ENV_DIR)
    own = not configured
    paths = SandboxPaths(Path(configured) if configured else tmp_path_factory.mktemp("postgres"))
    try:
        sandbox_postgres.start(paths)
    except SandboxError as exc:
        pytest.fail(f"cannot start PostgreSQL for this test session: {exc}", pytrace=False)
    server = PostgresServer(paths)
    try:
        yield server
    finally:
        if own:
            sandbox_postgres.stop(paths)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL (with its password) of a new, empty database for one test, dropped after it."""
    if not postgres_server.running:
        postgres_server.start()  # a test before this one stopped it and failed before starting it again
    name = f"wb_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.database_url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.database_url(name)
    finally:
        if not postgres_server.running:
            postgres_server.start()
        with psycopg.connect(postgres_server.database_url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def without_password(url: str) -> tuple[str, str]:
    """(the URL without its password, the password): a writeback config takes the password separately."""
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    netloc = f"{parts.username}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), password
