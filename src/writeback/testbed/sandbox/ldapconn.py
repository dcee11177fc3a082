"""LDAP connections to the sandbox DC (python-ldap), with python-ldap's exceptions translated here.

TLS options are set on the connection, never globally, so that the sandbox does not change how other code
in the same process (the directory adapter, tests) talks LDAP.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import ldap
from ldap.controls import LDAPControl

from writeback.errors import SandboxError


def connect(url: str, ca_file: Path, bind_dn: str, password: str, *, starttls: bool = False) -> Any:
    """A bound python-ldap connection that validates the server certificate against ``ca_file``."""
    conn = ldap.initialize(url, bytes_mode=False)
    try:
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca_file))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # apply the TLS options above to this connection
        if starttls:
            conn.start_tls_s()
        conn.simple_bind_s(bind_dn, password)
    except ldap.INVALID_CREDENTIALS as exc:
        conn.unbind_s()
        raise SandboxError(f"the sandbox DC refused the bind of {bind_dn}") from exc
    except ldap.LDAPError as exc:
        conn.unbind_s()
        raise SandboxError(f"cannot connect to the sandbox DC at {url}: {describe(exc)}") from exc
    return conn


def connect_when_ready(url: str, ca_file: Path, bind_dn: str, password: str, timeout: float = 60.0) -> Any:
    """Like :func:`connect`, retrying while a just-started Samba accepts TCP but cannot serve binds yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(url, ca_file, bind_dn, password)
        except SandboxError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def describe(exc: BaseException) -> str:
    """python-ldap's error as one line: its description and the server's diagnostic message."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    parts = [str(info.get("desc") or type(exc).__name__), str(info.get("info") or "")]
    return ": ".join(p for p in parts if p)


TREE_DELETE_OID = "1.2.840.113556.1.4.805"  # LDAP_SERVER_TREE_DELETE_OID: delete an entry and its subtree


def delete_subtree(conn: Any, dn: str) -> None:
    """Delete ``dn`` and everything below it (tree-delete control; leaf by leaf if the server refuses it).
    For test and benchmark OUs of the sandbox, never for a production directory."""
    try:
        conn.delete_ext_s(dn, serverctrls=[LDAPControl(TREE_DELETE_OID, True, None)])
        return
    except ldap.NO_SUCH_OBJECT:
        return
    except ldap.LDAPError:
        pass
    from writeback.testbed.sandbox.seed import paged_search  # here: seed imports this module

    entries = [d for d, _ in paged_search(conn, dn, "(objectClass=*)", ["1.1"]) if d]
    for child in sorted(entries, key=lambda d: d.count(","), reverse=True):
        with contextlib.suppress(ldap.NO_SUCH_OBJECT):
            try:
                conn.delete_s(child)
            except ldap.BUSY:
                # Samba refuses (51, "replmd_delete: Failed to modify object") to delete a group of 100,000+
                # members in one transaction: take its members out in chunks first, then delete it.
                _empty_members(conn, child)
                conn.delete_s(child)


MEMBER_CHUNK = 5_000  # values per modify, as writeback writes them


def _empty_members(conn: Any, dn: str) -> None:
    found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member"])
    members = found[0][1].get("member", []) if found else []
    for start in range(0, len(members), MEMBER_CHUNK):
        conn.modify_s(dn, [(ldap.MOD_DELETE, "member", members[start : start + MEMBER_CHUNK])])
