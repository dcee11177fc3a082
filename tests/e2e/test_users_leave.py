"""Leaving every in-scope group and a hard delete are acted on by a quick reconcile (`writeback apply` without
`--deep`), not only by deep ones, against the sandbox DC: a cloud-only member removed from her only group has her
account disabled at once and enabled again (the same object) when she is added back; a hard delete held over
`safety.delete_threshold` is deleted by the next quick `apply --allow-deletes`, though no AD group holds the
account any more by then.

The member, her group and the workspace come from test_users_lifecycle's fixtures (random suffix, in scope
alone, everything removed afterwards)."""

from __future__ import annotations

from typing import Any

import ldap
from tests.e2e.test_users_lifecycle import (  # noqa: F401 - member is a fixture
    DISABLED,
    Member,
    _accounts,
    _group_members,
    _uac,
    _workspace,
    member,
)


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
