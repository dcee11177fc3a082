"""Leaving every in-scope group and a hard delete are acted on by a quick reconcile (`writeback apply` without
`--deep`), not only by deep ones, against the sandbox DC: a cloud-only member removed from her only group has her
account disabled at once and enabled again (the same object) when she is added back; a hard delete held over
`safety.delete_threshold` is deleted by the next quick `apply --allow-deletes`, though no AD group holds the
account any more by then.

The member, her group and the workspace come from test_users_lifecycle's fixtures (random suffix, in scope
alone, everything removed afterwards). The same story runs through `writeback run`: its incremental cycles (not
its hourly reconcile) disable and enable the account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest
from tests.e2e.test_users_lifecycle import (  # noqa: F401 - member is a fixture
    DISABLED,
    JULIA,
    Member,
    _accounts,
    _group_members,
    _uac,
    _workspace,
    member,
)
from tests.testbed import service as support
from tests.testbed.ad import AdView
from tests.testbed.service import Cloud, service_config, wait_for


def _quick(result: Any) -> None:
    """The apply compared only what changed (a quick reconcile), not every managed group."""
    text = result.out + result.err
    assert result.code == 0, text
    assert "quick reconcile" in text and "deep reconcile" not in text, text


def test_a_quick_reconcile_disables_the_account_of_a_member_who_left_and_enables_it_on_return(
    sandbox: Any,
    cloud: Any,
    workspace: Any,
    ldap_conn: Any,
    ad: Any,
    member: Member,  # noqa: F811
) -> None:
    ws = _workspace(sandbox, workspace, member)
    first = ws.run("apply")
    assert first.code == 0, first.out + first.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    guid = account["objectGUID"]
    assert _uac(account) & DISABLED == 0 and dn.lower() in _group_members(ad, member.gid)

    cloud.remove_member(member.gid, member.id)  # removed from her only group
    left = ws.run("apply")
    _quick(left)
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED, "on_leave = disable (the default) sets ACCOUNTDISABLE: " + left.out
    assert account["objectGUID"] == guid
    assert dn.lower() not in _group_members(ad, member.gid)

    cloud.add_member(member.gid, member.id)  # added back
    back = ws.run("apply")
    _quick(back)
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED == 0, "enabled again on return: " + back.out
    assert account["objectGUID"] == guid, "the same account, not a new one"
    assert dn.lower() in _group_members(ad, member.gid)
    assert ws.run("plan").code == 0, "nothing left to do"


def test_a_hard_delete_is_held_by_a_quick_reconcile_and_deleted_by_the_next_one_allowed(
    sandbox: Any,
    cloud: Any,
    workspace: Any,
    ldap_conn: Any,
    ad: Any,
    member: Member,  # noqa: F811
) -> None:
    ws = _workspace(sandbox, workspace, member, safety="\n[safety]\ndelete_threshold = 0\n")
    first = ws.run("apply")
    assert first.code == 0, first.out + first.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)

    cloud.call("DELETE", f"/v1.0/users/{member.id}")
    cloud.call("DELETE", f"/v1.0/directory/deletedItems/{member.id}")
    held = ws.run("apply")
    assert held.code == 3, held.out + held.err  # held by the delete threshold
    assert "quick reconcile" in held.out + held.err
    assert _accounts(ldap_conn, member.ou, member.id) == [(dn, account)], "held: the account is still there"
    assert dn.lower() not in _group_members(ad, member.gid), "the member value went at once"

    allowed = ws.run("apply", "--allow-deletes", "1")
    _quick(allowed)
    assert not _accounts(ldap_conn, sandbox.base_dn, member.id), "the account is deleted: " + allowed.out
    assert not ldap_conn.search_s(member.ou, ldap.SCOPE_ONELEVEL, f"(cn={member.name}_*)", ["cn"])


def test_provision_on_demand_of_a_member_who_left_disables_her_account(
    sandbox: Any,
    cloud: Any,
    workspace: Any,
    ldap_conn: Any,
    ad: Any,
    member: Member,  # noqa: F811
) -> None:
    """`writeback provision USER` of a user no in-scope group holds any more decides her account's leave as
    every pass does (on_leave = disable, the default), and says so in its steps."""
    ws = _workspace(sandbox, workspace, member)
    first = ws.run("apply")
    assert first.code == 0, first.out + first.err
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    guid = account["objectGUID"]

    cloud.remove_member(member.gid, member.id)  # removed from her only group; no pass has run since
    done = ws.run("provision", member.id)
    assert done.code == 0, done.out + done.err
    assert "held by no in-scope group" in done.out and 'on_leave = "disable"' in done.out, done.out
    assert done.out.strip().splitlines()[-1].startswith("succeeded"), done.out
    ((dn, account),) = _accounts(ldap_conn, member.ou, member.id)
    assert _uac(account) & DISABLED and account["objectGUID"] == guid, done.out
    assert dn.lower() in _group_members(ad, member.gid), "a user pass writes only the account, not the group"

    again = ws.run("provision", member.id)
    assert again.code == 0 and "AD already matches the cloud" in again.out, again.out + again.err
    cleanup = ws.run("apply")  # the group's own pass removes the member value
    _quick(cleanup)
    assert dn.lower() not in _group_members(ad, member.gid)


service_factory = support.service_factory  # shared fixture


@pytest.fixture
def private_cloud(sandbox: Any, tmp_path: Path) -> Iterator[Cloud]:
    """A private emulator with a copy of the sandbox tenant, for the service (as test_run_service's ``cloud``;
    here the module's ``cloud`` stays the shared one the workspace tests use)."""
    with support.private_cloud(sandbox, tmp_path / "emulator") as handle:
        yield Cloud(handle)


def test_writeback_run_disables_the_account_in_an_incremental_cycle_and_enables_it_on_return(
    sandbox: Any,
    private_cloud: Cloud,
    test_ou: str,
    ldap_conn: Any,
    tmp_path: Path,
    service_factory: Any,
    fresh_id: str,
) -> None:
    ou = sandbox.cloud_users_ou
    if not ou:
        pytest.skip("this sandbox predates cloud_users_ou")
    cloud = private_cloud
    domain = cloud.call("GET", f"/v1.0/users/{JULIA}")["userPrincipalName"].split("@", 1)[1]
    prefix = f"Leave-{fresh_id}"
    user = cloud.call(
        "POST",
        "/v1.0/users",
        {
            "accountEnabled": True,
            "displayName": f"{prefix} Member",
            "mailNickname": f"lv{fresh_id}",
            "userPrincipalName": f"lv{fresh_id}@{domain}",
            "passwordProfile": {"password": f"Lv-{fresh_id}-Passw0rd!"},
        },
    )
    uid = user["id"]
    gid = cloud.create_group(f"{prefix} Group", [uid])
    users = f'\n[users]\nprovision = "cloud_members"\ntarget_ou = "{ou}"\n'
    config = service_config(sandbox, cloud, test_ou, tmp_path / "home", prefix, extra=users)
    text = config.read_text()  # accounts go to OU=Cloud Users, beside the test OU: base_dn is the domain
    config.write_text(text.replace(f'base_dn = "{test_ou}"', f'base_dn = "{sandbox.base_dn}"', 1))
    ad = AdView(ldap_conn, test_ou)
    try:
        svc = service_factory(config)

        def account() -> tuple[str, dict[str, list[bytes]]] | None:
            found = _accounts(ldap_conn, ou, uid)
            return found[0] if len(found) == 1 else None

        def in_group(dn: str) -> bool:
            groups = ad.by_anchor().get(gid) or []
            return len(groups) == 1 and dn.lower() in {m.lower() for m in groups[0].members}

        dn, attrs = wait_for(
            "the account and the group holding it", lambda: (a := account()) and in_group(a[0]) and a
        )
        guid = attrs["objectGUID"]
        assert _uac(attrs) & DISABLED == 0
        # The first (full) cycle is logged once its apply is done: counted from after it.
        cycles = len(
            wait_for("the first cycle logged", lambda: [e for e in svc.events() if e.get("event") == "cycle"])
        )

        cloud.remove_member(gid, uid)  # removed from her only group
        wait_for(
            "the account disabled", lambda: (a := account()) and _uac(a[1]) & DISABLED and not in_group(a[0])
        )
        # The cycle is logged once its apply is done, a moment after AD shows the change.
        new = wait_for(
            "the cycle that disabled it logged",
            lambda: [e for e in svc.events() if e.get("event") == "cycle"][cycles:],
        )
        assert not any(e["full"] for e in new), f"done by incremental cycles only: {new}"

        cloud.add_member(gid, uid)  # added back
        dn, attrs = wait_for(
            "the account enabled and in the group again",
            lambda: (a := account()) and _uac(a[1]) & DISABLED == 0 and in_group(a[0]) and a,
        )
        assert attrs["objectGUID"] == guid, "the same account, not a new one"
        assert svc.stop() == 0
    finally:
        for dn, _ in _accounts(ldap_conn, sandbox.base_dn, uid):
            ldap_conn.delete_s(dn)
