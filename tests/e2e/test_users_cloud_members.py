"""`[users] provision = "cloud_members"` against the sandbox: the cloud-only member of SG-Treasury-Portal (Julia
Santos) gets an AD account in OU=Cloud Users (sandbox.json ``cloud_users_ou``), delegated to the service account
as docs/least-privilege.md lists for users; the AD group then holds it; a rerun changes nothing. The password is
set in the add (pwdLastSet non-zero, and a bind with it works) and appears in no output and no file of the
workspace: it is captured at the LDAP layer by running the CLI with the adapter's generator wrapped (the
product has no such hook)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest

ANCHOR = "msDS-ExternalDirectoryObjectId"
JULIA = "3e0b6c1a-7d42-4f1e-9a8b-1c2d3e4f5a03"

# Runs `python -m writeback ARGS` with writeback.adapters.directory.adapter.new_password wrapped to append each
# password it makes to the file in argv[1] (outside the workspace).
_CAPTURE = """
import runpy, sys
import writeback.adapters.directory.adapter as adapter
path, made = sys.argv[1], adapter.new_password
def recorded(*args):
    password = made(*args)
    with open(path, "a", encoding="utf-8") as f:
        f.write(password + "\\n")
    return password
adapter.new_password = recorded
sys.argv = ["writeback", *sys.argv[2:]]
runpy.run_module("writeback", run_name="__main__")
"""


def _accounts(ldap_conn: Any, ou: str) -> list[tuple[str, dict[str, list[bytes]]]]:
    found = ldap_conn.search_s(
        ou,
        ldap.SCOPE_SUBTREE,
        f"({ANCHOR}=User_{JULIA})",
        [
            "sAMAccountName",
            "userPrincipalName",
            "adminDescription",
            "pwdLastSet",
            "userAccountControl",
            ANCHOR,
        ],
    )
    return [(dn, attrs) for dn, attrs in found if dn]


@pytest.fixture
def cloud_users_ou(sandbox: Any, cloud: Any, ldap_conn: Any) -> Iterator[str]:
    """OU=Cloud Users; Julia's account and Nora's SOA changes undone afterwards (other tests share them)."""
    ou = sandbox.cloud_users_ou
    if not ou:
        pytest.skip("this sandbox predates cloud_users_ou")
    nora_dn, nora_before = _nora(ldap_conn, sandbox.base_dn)
    assert not _accounts(ldap_conn, ou), "a Julia account is left from an earlier run"
    yield ou
    cloud.call("PATCH", f"/v1.0/users/{JULIA}", {"displayName": "Julia Santos"})
    for dn, _ in _accounts(ldap_conn, ou):
        ldap_conn.delete_s(dn)
    restore = [(ldap.MOD_REPLACE, "department", nora_before.get("department"))]
    if ANCHOR not in nora_before:
        restore.append((ldap.MOD_REPLACE, ANCHOR, None))
    ldap_conn.modify_s(nora_dn, restore)


def _nora(ldap_conn: Any, base: str) -> tuple[str, dict[str, list[bytes]]]:
    ((dn, attrs),) = [
        e
        for e in ldap_conn.search_s(
            base, ldap.SCOPE_SUBTREE, "(sAMAccountName=nora.kok)", ["department", ANCHOR]
        )
        if e[0]
    ]
    return dn, attrs


def _run(ws: Any, capture: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-c", _CAPTURE, str(capture), "--config", str(ws.config), *args],
        capture_output=True,
        text=True,
        env=ws.env,
        timeout=300,
    )
    ws.outputs += [p.stdout, p.stderr]
    return p


def test_a_cloud_only_member_gets_an_account_and_the_group_holds_it(
    sandbox: Any,
    cloud: Any,
    workspace: Any,
    ldap_conn: Any,
    ad: Any,
    cloud_users_ou: str,
    tmp_path_factory: Any,
) -> None:
    capture = tmp_path_factory.mktemp("captured") / "passwords"
    portal = cloud.group_by_name("SG-Treasury-Portal")
    extra = f'[users]\nprovision = "cloud_members"\ntarget_ou = "{cloud_users_ou}"\n'
    ws = workspace([portal["id"]], extra=extra)
    # The workspace manages its test OU only (base_dn = that OU); accounts go to OU=Cloud Users beside it, so
    # base_dn is the domain here (the groups still go to the test OU: target_ou).
    text = ws.config.read_text()
    assert f'base_dn = "{ws.ou}"' in text
    ws.config.write_text(text.replace(f'base_dn = "{ws.ou}"', f'base_dn = "{sandbox.base_dn}"'))

    plan = _run(ws, capture, "plan", "--json", "--out", str(ws.config.parent / "plan.json"))
    assert plan.returncode == 2, plan.stderr
    assert not capture.exists(), "planning makes no password"
    applied = _run(ws, capture, "apply", "--plan", str(ws.config.parent / "plan.json"))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    ((dn, account),) = _accounts(ldap_conn, cloud_users_ou)
    assert dn.lower().startswith("cn=julia santos_") and dn.lower().endswith(cloud_users_ou.lower())
    assert account["adminDescription"] == [f"User_{JULIA}".encode()]
    assert account["sAMAccountName"] == [b"julia.santos"]
    assert account["userPrincipalName"][0].lower().startswith(b"julia.santos@")
    assert int(account["pwdLastSet"][0]) != 0, "the password was set in the add"
    assert int(account["userAccountControl"][0]) & 0x2 == 0
    group = ad.anchored(portal["id"])
    assert group is not None
    assert dn.lower() in {m.lower() for m in group.get("member", [])}, "the AD group holds her account"

    (password,) = capture.read_text(encoding="utf-8").split()
    who = ldap.initialize(sandbox.ldap_url)
    who.set_option(ldap.OPT_X_TLS_CACERTFILE, str(sandbox.ca_file))
    who.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    who.simple_bind_s(account["userPrincipalName"][0].decode(), password)  # the password is hers
    who.unbind_s()

    again = _run(ws, capture, "plan")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to do
    assert len(_accounts(ldap_conn, cloud_users_ou)) == 1
    assert capture.read_text(encoding="utf-8").split() == [password], "no second account, no second password"
    log = _run(ws, capture, "log", "--json")
    assert JULIA in log.stdout

    # Renamed in the cloud: the account is renamed (modRDN, same object) and the group follows.
    cloud.call("PATCH", f"/v1.0/users/{JULIA}", {"displayName": "Julia Santos-Reyes"})
    renamed = _run(ws, capture, "apply")
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr
    ((new_dn, _),) = _accounts(ldap_conn, cloud_users_ou)
    assert new_dn.lower().startswith("cn=julia santos-reyes_"), new_dn
    group = ad.anchored(portal["id"])
    assert group is not None and new_dn.lower() in {m.lower() for m in group.get("member", [])}
    assert _run(ws, capture, "plan").returncode == 0

    for text in ws.outputs:
        assert password not in text
    for path in ws.config.parent.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert password.encode() not in data and password.encode("utf-16-le") not in data, path
