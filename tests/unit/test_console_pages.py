"""The pure parts of the console's pages (issue 25): a log row's steps and troubleshooting in words
(writeback.core.logtext), and the log's keyset paging and member filter over a real SQLite state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_console import Console, console, make_console  # noqa: F401 - the fixture
from writeback.app import views
from writeback.core.logtext import AD_LIMITS, Row, row_steps, troubleshooting
from writeback.core.model import SkipReason
from writeback.core.ports import LogQuery, LogRecord

OU = "OU=Writeback,DC=corp,DC=example,DC=com"
ANA = {"id": "u-ana", "name": "Ana Lopez", "kind": "user", "reason": SkipReason.CLOUD_ONLY.value}


def _texts(steps: list[dict[str, str]]) -> list[str]:
    return [s["description"] for s in steps]


def test_skipped_members_are_named_with_their_reason() -> None:
    detail = {"skipped": 1, "reasons": {SkipReason.CLOUD_ONLY.value: 1}, "members": [ANA]}
    steps = row_steps(Row("skip_members", "info", "CN=G,OU=X", detail=detail))
    assert _texts(steps)[-1] == "1 member not written: 1 cloud-only user skipped: Ana Lopez"
    # With the group's member count, as the issue words it.
    steps = row_steps(Row("skip_members", "info", "CN=G,OU=X", detail={**detail, "of": 4}))
    assert _texts(steps)[-1] == "3 of 4 members matched; 1 cloud-only user skipped: Ana Lopez"
    # Two reasons, one of them a device (named by its kind), the larger count first; plural words.
    dev = {"id": "d1", "name": "Kiosk-7", "kind": "device", "reason": SkipReason.UNSUPPORTED_KIND.value}
    ben = {**ANA, "id": "u-ben", "name": "Ben Ode"}
    detail = {"skipped": 3, "members": [ANA, ben, dev]}
    assert _texts(row_steps(Row("skip_members", "info", detail=detail)))[-1] == (
        "3 members not written: 2 cloud-only users skipped: Ana Lopez, Ben Ode; 1 device skipped: Kiosk-7"
    )


def test_member_changes_name_the_members_and_say_how_many_more() -> None:
    values = ["CN=Ana Lopez,OU=People,DC=corp", "CN=Lopez\\, Jr.,OU=People,DC=corp"]
    detail = {"reason": "2 members to add", "members": 5, "member_values": values}
    steps = row_steps(Row("add_members", "success", "CN=G,OU=X", detail=detail))
    assert [s["type"] for s in steps] == ["matching", "processing", "export"]
    assert _texts(steps)[-1] == "5 members added: Ana Lopez, Lopez, Jr. and 3 more"
    failed = row_steps(Row("remove_members", "error", "CN=G", "INSUFFICIENT_ACCESS: no", {"members": 1}))
    assert failed[-1]["status"] == "failure"
    assert failed[-1]["description"] == "1 member to remove: not done, INSUFFICIENT_ACCESS: no"


def test_updates_moves_held_and_operator_rows_say_what_happened() -> None:
    modified = [
        {"name": "description", "old": "a", "new": "b"},
        {"name": "displayName", "old": "x", "new": "y"},
    ]
    update = row_steps(Row("update", "success", "CN=G", detail={"modified": modified}))
    assert _texts(update)[-1] == "2 attributes updated: description, displayName"
    move = row_steps(Row("move", "pending", "CN=G,OU=A", detail={"new_dn": "CN=G,OU=B"}))
    assert _texts(move)[-1] == "to move to CN=G,OU=B (being written)"
    held = row_steps(
        Row(
            "held",
            "held",
            "CN=G",
            "Member removal threshold exceeded",
            {"change": "remove_members", "members": 20},
        )
    )
    assert held[-1]["status"] == "skipped"
    assert (
        _texts(held)[-1]
        == "remove members of 20 members held, not written: Member removal threshold exceeded"
    )
    allow = row_steps(Row("allow", "info", detail={"reason": "allowed once"}, actor="olga"))
    assert _texts(allow) == ["allowed once, asked by olga"]
    recorded = [{"type": "import", "status": "success", "description": "read"}]
    assert row_steps(Row("provision", "info", detail={"steps": recorded}, actor="olga")) == recorded


def test_insufficient_access_on_a_taken_over_group_names_the_rights_to_delegate() -> None:
    dn = "CN=GG-Finance,OU=Groups,DC=corp,DC=example,DC=com"
    error = f"modify of {dn} refused: INSUFFICIENT_ACCESS: 00002098: SecErr"
    (fix,) = troubleshooting(Row("add_members", "error", dn, error, {"members": 2}), OU)
    assert "taken over outside the target OU" in fix and "docs/least-privilege.md" in fix
    assert f'dsacls "{dn}" /G "%SVC%:WP;member"' in fix
    # Inside the target OU the rights are the OU's delegation, not one group's.
    inside = f"CN=G1,{OU}"
    (fix,) = troubleshooting(
        Row("update", "error", inside, "INSUFFICIENT_ACCESS: x", {"attributes": ["description"]}), OU
    )
    assert "The rights, exactly" in fix and "description" in fix and "dsacls" not in fix


def test_a_refused_value_names_the_ad_limit() -> None:
    long_name = "x" * 300
    row = Row(
        "update",
        "error",
        f"CN=G,{OU}",
        "modify refused: CONSTRAINT_VIOLATION: 0000202F: attribute displayName",
        {"modified": [{"name": "displayName", "old": "a", "new": long_name}]},
    )
    (fix,) = troubleshooting(row, OU)
    assert f"displayName has 300 characters, AD takes at most {AD_LIMITS['displayName']}" in fix
    # No value over a limit: the limits of what was written are named.
    row = Row(
        "update", "error", "CN=G", "INVALID_SYNTAX: x", {"modified": [{"name": "employeeID", "new": "1"}]}
    )
    (fix,) = troubleshooting(row, OU)
    assert "employeeID: 16" in fix


def test_troubleshooting_only_for_what_did_not_succeed_and_never_with_backticks() -> None:
    assert troubleshooting(Row("create", "success", "CN=G"), OU) == []
    rows = [
        Row("held", "held", "CN=G", "threshold"),
        Row("create", "interrupted", "CN=G", "stopped"),
        Row("create", "error", "CN=G", "ENTRY_ALREADY_EXISTS: x"),
        Row("move", "error", "CN=G", "NO_SUCH_OBJECT: x"),
        Row("update", "error", "CN=G", "something else"),
        Row("add_members", "error", "CN=G,OU=Else", "INSUFFICIENT_ACCESS", {}),
    ]
    for row in rows:
        fixes = troubleshooting(row, OU)
        assert fixes, row
        assert not any("`" in f for f in fixes), fixes
        assert not any("`" in s["description"] for s in row_steps(row))


def test_next_link_keeps_the_filters_and_replaces_the_key() -> None:
    params = {"action": "create", "limit": "5", "before": "90", "offset": "3", "group": ""}
    assert views.next_link("/api/log", params, 41) == "/api/log?action=create&limit=5&before=41"
    assert views.next_link("/api/log", params, None) is None


def _add_rows(store: Any, n: int, run: str) -> list[int]:
    return store.log_rows([LogRecord(run, "add_members", "success", cloud_id=f"g{i}") for i in range(n)])


def test_log_paging_follows_next_to_the_end_with_no_duplicate_or_gap(console: Console) -> None:  # noqa: F811
    store = console.service.engine.store
    first = _add_rows(store, 23, "r1")
    h = console.bearer(console.viewer)
    seen: list[int] = []
    url = "/api/log?limit=5&run=r1"
    pages = 0
    while url:
        body = console.client.get(url, headers=h).json()
        seen += [r["id"] for r in body["value"]]
        url = body.get("@odata.nextLink", "").removeprefix("http://testserver")
        if pages == 1:  # rows arriving while paging do not shift the pages
            _add_rows(store, 4, "r1")
        pages += 1
    assert pages == 5 and seen == sorted(first, reverse=True)
    r = console.client.get("/api/log?before=abc", headers=h)
    assert r.status_code == 400 and "before must be a whole number" in r.json()["error"]["message"]


def test_the_member_filter_finds_a_users_rows_by_id_and_dn(tmp_path: Path) -> None:
    c = make_console(tmp_path)
    store = c.service.engine.store
    dn = "CN=Lopez\\, Ana,OU=People,DC=corp"
    store.log_rows(
        [
            LogRecord(
                "r", "add_members", "success", cloud_id="g1", detail={"members": 1, "member_values": [dn]}
            ),
            LogRecord("r", "skip_members", "info", cloud_id="g2", detail={"members": [ANA]}),
            LogRecord(
                "r", "add_members", "success", cloud_id="g3", detail={"member_values": ["CN=Other,DC=corp"]}
            ),
            LogRecord("r", "create", "success", cloud_id="u-ana", dn=dn, detail={"target": "user"}),
            LogRecord(
                "r", "skip_members", "info", cloud_id="g4", detail={"members": [{**ANA, "id": "u-ana2"}]}
            ),
        ]
    )
    terms = views.member_terms(store, "u-ana")
    assert terms == ("u-ana", dn)  # the id, and the DN of the account writeback created for the user
    rows = store.query_log(LogQuery(member=terms))
    assert sorted(e.cloud_id for e in rows) == ["g1", "g2", "u-ana"]
    h = c.bearer(c.viewer)
    api = c.client.get("/api/log", params={"member": "u-ana"}, headers=h).json()["value"]
    assert sorted(r["cloud_id"] for r in api) == ["g1", "g2", "u-ana"]


def test_a_group_is_in_sync_only_when_nothing_of_its_last_run_or_later_is_held_or_failed() -> None:
    from writeback.app.pages import group_state
    from writeback.core.ports import LogEntry

    def e(i: int, run: str, action: str, result: str) -> LogEntry:
        return LogEntry(i, 1_800_000_000.0 + i, run, "g", "G", "CN=G", action, result, None, None)

    assert group_state([]) == ("not yet written", None)
    assert group_state([e(1, "r1", "create", "success")]) == ("in sync", "2027-01-15T08:00:01+00:00")
    # One pass logs its held removal first, then writes the update: the removal is still held.
    held = [e(3, "r2", "update", "success"), e(2, "r2", "held", "held"), e(1, "r1", "create", "success")]
    assert group_state(held) == ("held", None)
    # A later pass wrote the removal: in sync again.
    assert group_state([e(4, "r3", "remove_members", "success"), *held])[0] == "in sync"
    assert group_state([e(5, "r4", "add_members", "error"), e(1, "r1", "create", "success")])[0] == "failing"


def test_the_user_search_finds_by_name_upn_or_id_exact_matches_first(console: Console) -> None:  # noqa: F811
    from writeback.app.pages import find_users
    from writeback.core.model import CloudUser

    store = console.service.engine.store
    with store.transaction() as tx:
        tx.upsert_user(CloudUser("id-1", "Ana Lopez", "ana@corp.example"))
        tx.upsert_user(CloudUser("id-2", "Ana", "ana.b@corp.example"))
        tx.upsert_user(CloudUser("id-3", "Bob", "bob@corp.example"))
    assert [u["id"] for u in find_users(store, "ana")] == ["id-2", "id-1"]  # "Ana" exactly, then by name
    assert [u["id"] for u in find_users(store, "BOB@corp")] == ["id-3"]
    assert [u["id"] for u in find_users(store, "id-1")] == ["id-1"]
    assert find_users(store, "  ") == []
    console.sign_in(console.viewer)
    page = console.client.get("/users", params={"q": "lopez"}).text
    assert '<a href="/users/id-1">Ana Lopez</a>' in page and "id-3" not in page
