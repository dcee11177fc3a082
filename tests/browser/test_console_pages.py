"""The console's group, user, log and plan pages (issue 25) in headless Chromium against the sandbox, served by
`writeback run`: a group's page against AD and the cloud, a skipped member's reason, Provision from the group
page, a user's group history, the log's paging (following next links to the end), filters and details pane,
the plan's values, and the groups list's search, paging and "no longer updated" heading. axe-core checks each
page for serious or critical violations."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import RunningConsole, _wait_ready, assert_accessible, assert_fits, sign_in
from tests.e2e.test_users_cloud_members import JULIA, _accounts, cloud_users_ou  # noqa: F401 - a fixture
from writeback.console.auth import new_token, token_line
from writeback.testbed.sandbox.console import free_port

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def _wait(check: Callable[[], object], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _facts(page: Any, selector: str) -> dict[str, str]:
    dl = page.locator(selector).first
    terms, values = dl.locator("dt").all_inner_texts(), dl.locator("dd").all_inner_texts()
    return dict(zip(terms, values, strict=True))


def _members(page: Any) -> dict[str, list[str]]:
    """The group page's member rows: cloud member id -> the row's cells."""
    rows = page.locator("table.members tbody tr[data-id]")
    return {
        rows.nth(i).get_attribute("data-id"): rows.nth(i).locator("td").all_inner_texts()
        for i in range(rows.count())
    }


def _provision_here(page: Any) -> None:
    page.click("button:has-text('Provision now')")
    page.wait_for_url(re.compile(r"/provision/[0-9a-f]+$"))
    page.wait_for_selector("text=Done,", timeout=90_000)


def test_a_groups_page_shows_its_ad_object_cloud_group_and_members(
    browser: Any, console: RunningConsole, ad: Any
) -> None:
    a = console.groups["A"]
    page = sign_in(browser, console, console.operator)
    page.click("nav >> text=Groups")
    page.click(f"table.groups >> text={console.names['A']}")
    page.wait_for_url(console.url + f"/groups/{a}")
    assert page.locator("h1").inner_text() == console.names["A"]
    assert page.locator(".group-state").inner_text().startswith("In sync as of")

    cloud = _facts(page, "dl.cloud")
    assert cloud["Name"] == console.names["A"] and cloud["Object id"] == a
    assert cloud["Type"] == "Security" and cloud["Source of authority"] == "cloud"
    assert cloud["Direct members"] == "30"
    real = ad.anchored(a)
    shown = _facts(page, "dl.ad")
    assert shown["Distinguished name"].lower() == real["dn"].lower()
    assert shown["sAMAccountName"] == real["sAMAccountName"][0]
    assert shown["objectGUID"] == str(uuid.UUID(bytes_le=real["objectGUID"][0]))
    assert shown["OU"].lower() == real["dn"].split(",", 1)[1].lower()
    group_type = int(real["groupType"][0]) & 0xFFFFFFFF
    assert shown["Group type"] == ("security" if group_type & 0x80000000 else "distribution")
    assert shown["Group scope"] == {2: "global", 4: "domain local", 8: "universal"}[group_type & 0xE]
    assert shown["SID"].startswith("S-1-5-21-")
    assert shown["Member values"] == str(len(real["member"]))

    # Every cloud member is written: its AD member value is the user's own account.
    members = _members(page)
    assert set(members) == {u["id"] for u in console.users}
    for u in console.users:
        cells = members[u["id"]]
        assert cells[2] == "written", cells
        assert cells[3].lower() == u["onPremisesDistinguishedName"].lower()
    assert page.locator("table.members tr.member-ad-only").count() == 0
    assert page.locator("table.history tbody tr").count() >= 1
    assert "create" in page.locator("table.history").inner_text()
    assert_accessible(page, "the group page")
    assert_fits(page, "the group page")  # the members table scrolls in its own box at 390 px
    page.set_viewport_size({"width": 1200, "height": 820})

    # The JSON twin says the same.
    body = console.get(f"/api/groups/{a}", console.viewer).json()
    assert body["ad"]["dn"].lower() == real["dn"].lower() and body["inSync"] is True
    assert {m["state"] for m in body["members"]} == {"written"} and len(body["members"]) == 30
    assert console.get("/api/groups/no-such-group", console.viewer).status_code == 404


def test_a_skipped_member_its_reason_and_a_users_group_history(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    b = console.groups["B"]
    # A cloud-only user with no AD account (not an SOA-converted one, which has its original account): skipped.
    outsider = next(u for u in cloud.cloud_only_users() if not u.get("onPremisesDistinguishedName"))
    newcomer, leaver = console.users[27], console.users[0]  # 27 joins B, 0 leaves it
    cloud.add_member(b, outsider["id"])
    cloud.add_member(b, newcomer["id"])
    cloud.remove_member(b, leaver["id"])
    time.sleep(1)

    page = sign_in(browser, console, console.operator)
    page.goto(console.url + f"/groups/{b}")
    _provision_here(page)  # the group page's own action: the service reads the cloud and writes B now
    page.goto(console.url + f"/groups/{b}")
    members = _members(page)
    assert members[outsider["id"]][2] == "skipped: cloud-only user", members[outsider["id"]]
    assert members[outsider["id"]][3] == "—"
    assert members[newcomer["id"]][2] == "written"
    assert leaver["id"] not in members
    assert newcomer["onPremisesDistinguishedName"].lower() in {m.lower() for m in ad.anchored(b)["member"]}
    assert_accessible(page, "the group page with a skipped member")

    # The log row of the skipped member says who and why, in the details pane beside the list.
    page.goto(console.url + f"/log?action=skip_members&group={b}")
    page.locator("table.log tbody tr").first.locator("a:has-text('Steps')").click()
    pane = page.locator("#details article")
    pane.wait_for()
    assert re.search(r"/log\?action=skip_members", page.url), "the list stayed: no navigation"
    upn = cloud.call("GET", f"/v1.0/users/{outsider['id']}")["userPrincipalName"]
    # B: 25 written (24 of the first 25 and the newcomer), and the outsider, named by its UPN (unique).
    expected = f"25 of 26 members matched; 1 cloud-only user skipped: {upn}"
    assert expected in pane.locator("ol.steps").inner_text()
    assert page.locator("table.log").is_visible() and pane.is_visible()
    assert_accessible(page, "the log with its details pane open")

    # The newcomer's page, reached from the member list, says when writeback added them to B.
    page.goto(console.url + f"/groups/{b}")
    page.locator(f"table.members tr[data-id='{newcomer['id']}'] a").click()
    page.wait_for_url(console.url + f"/users/{newcomer['id']}")
    rows = page.locator("table.memberships tbody tr").all_inner_texts()
    assert any("added to" in r and console.names["B"] in r and "success" in r for r in rows), rows
    assert_accessible(page, "the user page")
    assert_fits(page, "the user page")
    page.set_viewport_size({"width": 1200, "height": 820})
    # The leaver's page, reached from the search box: removed from B.
    page.goto(console.url + "/groups")
    page.fill("#user-q", leaver["displayName"])
    page.click("button:has-text('Find user')")
    page.click(f"ul.matches a[href='/users/{leaver['id']}']")
    rows = page.locator("table.memberships tbody tr").all_inner_texts()
    assert any("removed from" in r and console.names["B"] in r for r in rows), rows
    assert any("added to" in r and console.names["B"] in r for r in rows), rows  # the first cycle's create
    assert_accessible(page, "the user search's result")
    # The API: a user's rows.
    found = console.get(f"/api/log?member={newcomer['id']}", console.viewer).json()["value"]
    assert any(r["action"] == "add_members" and r["cloud_id"] == b for r in found), found


def test_the_log_pages_follow_next_to_the_end_and_filter(browser: Any, console: RunningConsole) -> None:
    for _ in range(3):  # three more rows (an operator's action is a log row): 5 in all, 3 pages of 2
        r = httpx.post(console.url + "/api/reconcile", headers=console.bearer(console.operator), timeout=30)
        assert r.status_code == 202, r.text
    everything = console.get("/api/log?limit=1000", console.viewer).json()
    assert "@odata.nextLink" not in everything
    ids = [r["id"] for r in everything["value"]]
    assert len(ids) >= 5
    # The API: limit 2 at a time, following @odata.nextLink.
    seen: list[int] = []
    url: str | None = "/api/log?limit=2"
    while url:
        body = console.get(url.removeprefix(console.url), console.viewer).json()
        seen += [r["id"] for r in body["value"]]
        url = body.get("@odata.nextLink")
    # Rows a reconcile adds meanwhile come first (newer ids); the rest are exactly the snapshot's, in order.
    assert seen == sorted(set(seen), reverse=True), "paging repeated a row or broke the order"
    assert [i for i in seen if i <= ids[0]] == ids, "paging skipped a row"
    # The page: "Older rows" to the end.
    page = sign_in(browser, console, console.viewer)
    page.goto(console.url + "/log?limit=2")
    shown: list[int] = []
    while True:
        shown += [
            int(i.split("-")[1])
            for i in page.locator("table.log tbody tr").evaluate_all("rows => rows.map(r => r.id)")
        ]
        older = page.locator("a[rel=next]")
        if older.count() == 0:
            break
        older.click()
        page.wait_for_load_state()
    assert shown == sorted(set(shown), reverse=True)
    assert [i for i in shown if i <= ids[0]] == ids
    assert page.locator("text=No older rows.").is_visible()

    # Filters: change kind and result; a preset; a range with nothing in it; a run.
    page.goto(console.url + "/log")
    page.select_option("select[name=action]", "create")
    page.select_option("select[name=status]", "success")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"/log\?.*action=create"))
    cells = [r.split("\t") for r in page.locator("table.log tbody tr").all_inner_texts()]
    assert len(cells) == 2 and all(c[2] == "create" and c[3] == "success" for c in cells), cells
    status = page.locator("table.log tbody tr [data-status]").first
    assert status.get_attribute("data-status") == "success"
    assert "state-good" in (status.get_attribute("class") or "")  # by colour as well as by word
    csv_href = page.locator("a:has-text('CSV')").get_attribute("href")
    csv_text = page.request.get(console.url + csv_href).text()
    assert len(csv_text.strip().splitlines()) == 3 and csv_text.count(",create,success,") == 2
    assert_accessible(page, "the log")
    page.click("text=Last hour")
    page.wait_for_url(re.compile(r"since=1h.*action=create|action=create.*since=1h"))
    assert page.locator("table.log tbody tr").count() == 2
    page.goto(console.url + "/log?since=2999-01-01")
    assert page.locator("text=No log entries match these filters.").is_visible()
    page.goto(console.url + "/log?since=2020-01-01T00:00&until=2999-01-01T00:00")
    assert page.locator("table.log tbody tr").count() >= len(ids)
    page.goto(console.url + "/log")
    run = page.locator("table.log tbody tr").first.locator("td").nth(1).inner_text()
    page.locator("table.log tbody tr").first.locator("td").nth(1).locator("a").click()
    page.wait_for_url(re.compile(rf"/log\?run={run}$"))
    runs = {r.split("\t")[1] for r in page.locator("table.log tbody tr").all_inner_texts()}
    assert runs == {run}
    # Without JavaScript's pane, a row's details are still a page of their own.
    href = page.locator("table.log tbody tr").first.locator("a:has-text('Steps')").get_attribute("href")
    page.goto(console.url + href)
    assert page.locator("h2:has-text('Summary'), h3:has-text('Summary')").count() == 1
    assert_accessible(page, "a log row's page")


def test_a_failed_rows_troubleshooting_names_the_fix(browser: Any, console: RunningConsole) -> None:
    """Rows as the engine logs an AD refusal (a DirectoryWriteError's message): the details pane names the
    rights to delegate on a group taken over outside the target OU, and AD's limit for a refused value."""
    from writeback.adapters.state.sqlite import SqliteStore
    from writeback.core.ports import LogRecord

    taken = "CN=GG-Finance-Approvers,OU=Groups,DC=corp,DC=example,DC=test"
    store = SqliteStore(console.ws.config.parent / "state.sqlite")
    try:
        access, value = store.log_rows(
            [
                LogRecord(
                    "t-access",
                    "add_members",
                    "error",
                    cloud_id=console.groups["A"],
                    group_name="GG-Finance-Approvers",
                    dn=taken,
                    error=f"modify of {taken} refused: INSUFFICIENT_ACCESS: 00002098: SecErr: DSID-03150F94",
                    detail={
                        "members": 1,
                        "member_values": ["CN=Ana Lopez,OU=Staff,DC=corp,DC=example,DC=test"],
                    },
                ),
                LogRecord(
                    "t-value",
                    "update",
                    "error",
                    cloud_id=console.groups["B"],
                    group_name=console.names["B"],
                    dn=f"CN=x,{console.ws.ou}",
                    error="modify refused: CONSTRAINT_VIOLATION: 0000202F: AtrErr: DSID-03152C7F",
                    detail={"modified": [{"name": "displayName", "old": "a", "new": "n" * 300}]},
                ),
            ]
        )
    finally:
        store.close()
    page = sign_in(browser, console, console.viewer)
    page.goto(console.url + "/log?status=error")
    page.locator(f"#row-{access} a:has-text('Steps')").click()
    fix = page.locator("#details ul.troubleshooting")
    fix.wait_for()
    assert f'dsacls "{taken}" /G "%SVC%:WP;member"' in fix.inner_text()
    assert "taken over outside the target OU" in fix.inner_text()
    assert page.locator(f"#row-{access} [data-status]").inner_text() == "error"
    assert_accessible(page, "a failed row's details")
    page.locator(f"#row-{value} a:has-text('Steps')").click()
    page.locator("#details ul.troubleshooting", has_text="displayName").wait_for()
    assert "displayName has 300 characters, AD takes at most 256" in page.locator("#details").inner_text()


def test_the_plan_shows_values_members_and_what_allow_would_write(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    a, b = console.groups["A"], console.groups["B"]
    page = sign_in(browser, console, console.operator)
    page.goto(console.url + "/plan")
    assert page.locator(".empty-plan").inner_text().startswith("Nothing to do")
    assert_accessible(page, "the empty plan")

    cloud.patch_group(a, description="Quarterly numbers")
    joiner = console.users[26]  # in A, not in B
    cloud.add_member(b, joiner["id"])
    for u in console.users[:20]:  # 20 of 55 values leave A: over the removal threshold, held
        cloud.remove_member(a, u["id"])
    time.sleep(1)
    page.goto(console.url + "/plan")
    update = page.locator("article.change-update", has_text=console.names["A"])
    assert f"description: test group {console.names['A']} → Quarterly numbers" in update.inner_text()
    add = page.locator("article.change-add_members", has_text=console.names["B"])
    add.locator("summary").click()
    assert "1 member to add" in add.inner_text() and joiner["displayName"] in add.inner_text()
    held = page.locator("article.held.change-remove_members", has_text=console.names["A"])
    held.locator("summary").click()
    text = held.inner_text()
    assert "20 members to remove" in text
    assert all(u["displayName"] in text for u in console.users[:20])
    allow = page.locator("form.allow")
    assert allow.locator("input[name=removals]").get_attribute("value") == "20"
    assert "20 removals" in allow.inner_text()
    assert_accessible(page, "the plan")

    # Once the service held them too, the group's page offers Allow; it writes the removals.
    page.goto(console.url + "/")
    page.click("button:has-text('Reconcile now')")

    def held() -> bool:
        page.goto(console.url + f"/groups/{a}")
        return page.locator("form.allow").count() == 1

    _wait(held, "the group page to offer Allow")
    assert page.locator(".group-state").inner_text() == "Held"
    assert page.locator("form.allow input[name=removals]").get_attribute("value") == "20"
    assert_accessible(page, "a group with held changes")
    page.click("form.allow button:has-text('Allow')")
    _wait(lambda: len(ad.anchored(a)["member"]) == 10, "the allowed removals to reach AD")


def test_the_groups_list_searches_pages_and_lists_groups_no_longer_updated(
    browser: Any, console: RunningConsole, cloud: Any
) -> None:
    a, b = console.groups["A"], console.groups["B"]
    page = sign_in(browser, console, console.viewer)
    page.goto(console.url + "/groups?size=1")
    assert page.locator("table.groups tbody tr").count() == 1
    first = page.locator("table.groups tbody tr").inner_text()
    page.click("a[rel=next]")
    second = page.locator("table.groups tbody tr").inner_text()
    assert console.names["A"] in first and console.names["B"] in second  # sorted by name
    assert page.locator("a[rel=next]").count() == 0 and page.locator("a[rel=prev]").count() == 1
    # Sorting by name, descending: B first.
    page.goto(console.url + "/groups")
    page.click("table.groups th >> text=Cloud group")  # sorted by name already: the link sorts descending
    names = page.locator("table.groups tbody tr td:first-child a").all_inner_texts()
    assert names == [console.names["B"], console.names["A"]]
    assert page.locator("table.groups th[aria-sort=descending]").count() == 1
    # Search by name and by id.
    page.fill("#group-q", console.names["A"])
    page.click("button:has-text('Search')")
    assert page.locator("table.groups tbody tr").count() == 1
    page.goto(console.url + f"/groups?q={b}")
    assert page.locator("table.groups tbody tr td:first-child a").all_inner_texts() == [console.names["B"]]
    page.goto(console.url + "/groups?q=no-such-group-anywhere")
    assert page.locator("text=No managed group matches").is_visible()
    assert_accessible(page, "the groups list")

    # B deleted in the cloud: after a read of the cloud (the plan page syncs the replica), it is listed under
    # "No longer updated" with the reason, and never as in sync.
    cloud.call("DELETE", f"/v1.0/groups/{b}")
    time.sleep(1)
    page.goto(console.url + "/plan")
    page.goto(console.url + "/groups")
    stale = page.locator("table.not-updated tbody tr")
    assert stale.count() == 1 and console.names["B"] in stale.inner_text()
    assert "deleted in the cloud" in stale.inner_text()
    managed = page.locator("table.groups tbody tr").all_inner_texts()
    assert len(managed) == 1 and console.names["A"] in managed[0] and "in sync" in managed[0]
    page.goto(console.url + f"/groups/{b}")
    assert page.locator(".group-state").inner_text().startswith("No longer updated")
    assert "In sync" not in page.locator(".group-state").inner_text()
    assert_accessible(page, "a group no longer updated")
    body = console.get("/api/groups", console.viewer).json()
    assert [g["cloud_id"] for g in body["value"]] == [a] and [g["cloud_id"] for g in body["notUpdated"]] == [
        b
    ]


@pytest.fixture
def members_console(
    sandbox: Any,
    workspace: Any,
    cloud: Any,
    cloud_users_ou: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> Iterator[RunningConsole]:
    """`writeback run` with [users] provision = "cloud_members" over SG-Treasury-Portal: its cloud-only member
    Julia Santos gets an account in OU=Cloud Users at the first cycle (as tests/e2e/test_users_cloud_members)."""
    portal = cloud.group_by_name("SG-Treasury-Portal")
    operator = new_token()
    tokens = tmp_path / "console_tokens"
    tokens.write_text(token_line("olga", "operator", operator))
    tokens.chmod(0o600)
    port = free_port()
    ws = workspace(
        [portal["id"]],
        extra=f"""
[service]
listen = "127.0.0.1:{port}"
poll_interval = 3600
reconcile_interval = 3600
health_file = "{tmp_path / "health.json"}"

[console]
tokens_file = "{tokens}"

[users]
provision = "cloud_members"
target_ou = "{cloud_users_ou}"
""",
    )
    text = ws.config.read_text()  # accounts go beside the test OU: base_dn is the domain
    ws.config.write_text(text.replace(f'base_dn = "{ws.ou}"', f'base_dn = "{sandbox.base_dn}"'))
    log_file = tmp_path / "service.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "writeback", "--config", str(ws.config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env=ws.env,
        )
    c = RunningConsole(
        f"http://127.0.0.1:{port}",
        operator,
        operator,
        ws,
        {"P": portal["id"]},
        {"P": portal["displayName"]},
        [],
        proc,
        log_file,
    )
    try:
        _wait_ready(c)
        yield c
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_accounts_writeback_created_show_on_the_group_and_user_pages(
    browser: Any,
    members_console: RunningConsole,
    ldap_conn: Any,
    cloud_users_ou: str,  # noqa: F811
) -> None:
    c = members_console
    portal = c.groups["P"]
    ((julia_dn, _),) = _accounts(ldap_conn, cloud_users_ou)
    page = sign_in(browser, c, c.operator)
    page.goto(c.url + f"/groups/{portal}")
    accounts = page.locator("ul.accounts li").all_inner_texts()
    assert len(accounts) == 1 and accounts[0].startswith(f"Julia Santos: {julia_dn}"), accounts
    row = _members(page)[JULIA]
    assert row[2] == "written" and row[3] == f"{julia_dn} (created by writeback)", row
    assert_accessible(page, "a group with an account writeback created")

    page.locator(f"table.members tr[data-id='{JULIA}'] a").click()
    page.wait_for_url(c.url + f"/users/{JULIA}")
    facts = _facts(page, "dl.facts")
    assert facts["Type"] == "cloud-only"
    assert facts["AD account writeback manages"] == f"{julia_dn}: created by writeback (cloud-only member)"
    rows = page.locator("table.memberships tbody tr").all_inner_texts()
    assert any("added to" in r and "SG-Treasury-Portal" in r for r in rows), rows
    assert (
        "create"
        in page.locator("text=Its AD account's history")
        .locator("xpath=following-sibling::ul[1]")
        .inner_text()
    )
    assert_accessible(page, "the page of a user writeback created an account for")
    body = c.get(f"/api/users/{JULIA}", c.operator).json()
    assert body["account"]["dn"] == julia_dn
