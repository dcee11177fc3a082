"""The console's look, status and operator actions in headless Chromium against the sandbox (`writeback run`
serving the console): every page of this part passes axe-core (no serious or critical violation) and fits 390 px
without sideways scrolling; error pages keep the layout; times are <time> elements; the chart has dates, counts,
a legend and a table; Pause stops writing end to end and Resume applies what changed; Restart rebuilds the
replica and reconciles deeply; Allow asks first; the configuration page and its testers; the keyboard."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import RunningConsole, assert_accessible, assert_fits, screenshot, sign_in

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def _wait(check: Callable[[], object], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _status(c: RunningConsole) -> dict[str, Any]:
    r = c.get("/api/status", c.viewer)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _cycle_after(c: RunningConsole, before: str | None) -> Callable[[], bool]:
    """True once a cycle started after ``before`` (an ISO time) has ended."""

    def ended() -> bool:
        s = _status(c)
        return s["phase"] == "idle" and s["lastExecution"] is not None and s["lastExecution"] != before

    return ended


def _done(page: Any) -> str:
    text: str = page.locator("#done[role=status]").inner_text()
    return text


def _members(ad: Any, gid: str) -> set[str]:
    g = ad.anchored(gid)
    assert g is not None, f"no AD group anchored to {gid}"
    return {m.lower() for m in g.get("member", [])}


def _check_page(page: Any, what: str, pages: bool = True) -> None:
    """The layout (the header, and with ``pages`` the console's navigation), no serious accessibility
    violation, and no sideways scroll at 390 px."""
    assert page.locator("header nav[aria-label=Site]").count() == 1, f"{what}: no header"
    assert page.locator("header nav[aria-label=Console]").count() == int(pages), f"{what}: navigation"
    assert page.locator("main#main").count() == 1
    assert_accessible(page, what)
    assert_fits(page, what)
    page.set_viewport_size({"width": 1200, "height": 820})


def test_every_page_of_the_console_look_is_accessible_and_fits_a_phone(
    browser: Any, console: RunningConsole
) -> None:
    # Signed out: the sign-in page, and a 404 that still has the console's navigation and says what to do.
    context = browser.new_context()
    page = context.new_page()
    page.goto(console.url + "/signin")
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
    _check_page(page, "the sign-in page", pages=False)
    context.close()
    icon = httpx.get(console.url + "/static/favicon.svg", timeout=10)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    css = httpx.get(console.url + "/static/pico.min.css", timeout=10)
    assert css.status_code == 200 and "Pico CSS" in css.text[:200]

    page = sign_in(browser, console, console.operator)
    for path, heading in (
        ("/", "Status"),
        ("/config", "Configuration"),
        ("/actions/restart", "Restart provisioning?"),
        ("/actions/allow?removals=3", "Allow held changes?"),
    ):
        page.goto(console.url + path)
        assert page.locator("h1").inner_text() == heading
        _check_page(page, heading)
    # Error pages: the layout, what happened, what to do.
    r = page.goto(console.url + "/no/such/page")
    assert r.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    assert "Check the address" in page.locator("main").inner_text()
    _check_page(page, "the 404 page")
    r = page.goto(console.url + "/log/999999999")
    assert r.status == 404 and "no such log entry" in page.locator("[role=alert]").inner_text()
    _check_page(page, "a missing log entry")
    screenshot(page, "console-404.png")
    # A viewer asking for an operator's page: a 403 in the layout naming the role it needs.
    viewer = sign_in(browser, console, console.viewer)
    r = viewer.goto(console.url + "/actions/restart")
    assert r.status == 403 and "needs the operator role" in viewer.locator("[role=alert]").inner_text()
    assert "token with the operator role" in viewer.locator("main").inner_text()
    _check_page(viewer, "the 403 page")
    # No message on these pages carries Markdown backticks.
    for p, path in ((page, "/"), (page, "/config"), (viewer, "/")):
        p.goto(console.url + path)
        assert "`" not in p.locator("main").inner_text(), f"a backtick on {path}"


def test_the_status_has_human_times_its_role_phase_and_a_labelled_chart(
    browser: Any, console: RunningConsole
) -> None:
    page = sign_in(browser, console, console.operator)
    state = page.locator("#state").inner_text()
    assert state == "In sync", state  # a word, not "ok — ok"
    assert "state-good" in (page.locator("#state").get_attribute("class") or "")
    facts = dict(
        zip(
            page.locator("dl.facts dt").all_inner_texts(),
            page.locator("dl.facts dd").all_inner_texts(),
            strict=True,
        )
    )
    assert facts["Role"] == "active"
    assert facts["Now"] == "waiting for the next cycle"
    assert re.fullmatch(r"(just now|\d+ s ago|\d+ min ago)", facts["Last successful cycle"]), facts
    assert re.fullmatch(r"in \d+ (min|h)", facts["Next cycle"]), facts
    # Each time is a <time> with the instant and the full time on hover.
    last = page.locator("dl#cycle dd time").first
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last.get_attribute("datetime") or "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", last.get_attribute("title") or "")
    # The chart: dates on the axis, the day's count above its bar, a scale, a legend and a table of the numbers.
    chart = page.locator("svg.chart")
    assert chart.get_attribute("aria-labelledby") == "chart-title chart-desc"
    texts = chart.locator("text").all_text_contents()
    today = time.gmtime()
    assert f"{time.strftime('%b', today)} {today.tm_mday}" in texts, texts
    total_today = _status(console)["actionsPerDay"]
    count = sum(p["count"] for p in total_today if p["day"] == time.strftime("%Y-%m-%d", today))
    assert count > 0 and str(count) in texts
    assert "success" in page.locator("ul[aria-label=Legend]").inner_text()
    assert screenshot(page, "console-status.png").stat().st_size > 10_000  # the README's picture
    page.click("summary:has-text('The numbers as a table')")
    rows = page.locator("details table tbody tr")
    assert rows.count() == 14
    assert rows.last.locator("td").first.inner_text() == str(count)
    # The API has the same status, with the phase and progress the service publishes.
    s = _status(console)
    assert (s["status"], s["label"], s["phase"], s["paused"]) == ("ok", "In sync", "idle", None)
    health = json.loads((console.ws.config.parent.parent / "health.json").read_text())
    assert health["phase"] == "idle" and health["cycle_kind"] in ("reconcile", "incremental")


def test_pause_stops_writing_end_to_end_and_resume_writes_what_changed(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    a = console.groups["A"]
    newcomer = next(u for u in cloud.synced_users() if u["id"] not in {x["id"] for x in console.users})
    page = sign_in(browser, console, console.operator)
    page.click("button:has-text('Pause')")
    page.wait_for_url(re.compile(r"/\?done="))
    assert "Paused: writeback keeps reading the cloud and writes nothing to AD" in _done(page)
    assert "olga" in _done(page)
    banner = "Paused: writeback writes nothing to AD."
    for path in ("/", "/groups", "/log", "/config", "/provision"):  # every page says so
        page.goto(console.url + path)
        assert banner in page.locator("main").inner_text(), path
    assert _status(console)["status"] == "paused"
    page.goto(console.url + "/")
    _check_page(page, "the status while paused")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "console-status-paused-390.png")
    page.set_viewport_size({"width": 1200, "height": 820})

    # A cloud change while paused: the service reads it (Reconcile now runs a cycle) but writes nothing.
    cloud.add_member(a, newcomer["id"])
    before = _status(console)["lastExecution"]
    page.goto(console.url + "/")
    page.click("button:has-text('Reconcile now')")
    page.wait_for_url(re.compile(r"/\?done="))
    assert "A deep reconcile starts now" in _done(page) and "waits for Resume" in _done(page)
    _wait(_cycle_after(console, before), "the paused cycle")
    assert newcomer["onPremisesDistinguishedName"].lower() not in _members(ad, a)
    assert _status(console)["replicaLagSeconds"] < 60  # it did read the cloud
    # Provision on demand refuses while paused, saying how to resume.
    page.goto(console.url + "/provision?q=" + console.names["A"])
    page.click(f"button[aria-label='Provision {console.names['A']}']")
    assert "writeback resume" in page.locator("[role=alert]").inner_text()
    assert "Resume writing with the Resume button" in page.locator("main").inner_text()
    assert newcomer["onPremisesDistinguishedName"].lower() not in _members(ad, a)

    page.goto(console.url + "/")
    page.click("button:has-text('Resume')")
    page.wait_for_url(re.compile(r"/\?done="))
    assert "Resumed: a reconcile starts now" in _done(page)
    _wait(
        lambda: newcomer["onPremisesDistinguishedName"].lower() in _members(ad, a), "the change to reach AD"
    )
    _wait(lambda: _status(console)["status"] == "ok", "the status to be ok again")
    assert banner not in page.locator("main").inner_text()
    # Both actions are in the log with the operator's name.
    log = console.get("/api/log?action=pause", console.viewer).json()["value"]
    assert [r["actor"] for r in log] == ["olga"]
    log = console.get("/api/log?action=resume", console.viewer).json()["value"]
    assert [r["actor"] for r in log] == ["olga"]


def test_restart_rebuilds_the_replica_then_reconciles_deeply(
    browser: Any, console: RunningConsole, ad: Any
) -> None:
    a = console.groups["A"]
    state = console.ws.config.parent / "state.sqlite"
    # Damage the replica: group A's members are gone from it. A delta round would never bring them back.
    with sqlite3.connect(state) as db:
        gone = db.execute("DELETE FROM members WHERE group_id = ?", (a,)).rowcount
    assert gone == 30
    page = sign_in(browser, console, console.operator)
    page.click("text=Restart provisioning…")
    assert page.locator("h1").inner_text() == "Restart provisioning?"
    assert "reads every user and group from Microsoft Graph again" in page.locator("main").inner_text()
    before, reconciled = _status(console)["lastExecution"], _status(console)["lastFullReconcile"]
    page.click("button:has-text('Restart provisioning')")
    page.wait_for_url(re.compile(r"/\?done="))
    assert "Restart started" in _done(page)
    _wait(_cycle_after(console, before), "the restart's cycle")
    with sqlite3.connect(state) as db:
        back = db.execute("SELECT COUNT(*) FROM members WHERE group_id = ?", (a,)).fetchone()[0]
    assert back == 30, "the full read brought the members back into the replica"
    assert len(_members(ad, a)) == 30, "and nothing was removed from AD"
    s = _status(console)
    assert s["cycleKind"] == "restart" and s["status"] == "ok"
    assert s["lastFullReconcile"] != reconciled, "the restart's cycle was a reconcile"
    assert "restart: the cloud replica's delta links were dropped" in console.log()
    (row,) = console.get("/api/log?action=restart", console.viewer).json()["value"]
    assert row["actor"] == "olga"


def test_allow_asks_first_and_says_what_it_releases(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    a = console.groups["A"]
    for u in console.users[:20]:  # 20 of the 55 managed member values (36 %, over the default 30 %)
        cloud.remove_member(a, u["id"])
    page = sign_in(browser, console, console.operator)
    page.click("button:has-text('Reconcile now')")

    def held() -> bool:
        page.goto(console.url + "/")
        return page.locator("#state").inner_text() == "Changes held"

    _wait(held, "the status to show the held removals")
    page.click("button:has-text('Allow…')")
    assert page.locator("h1").inner_text() == "Allow held changes?"
    released = page.locator("main li").all_inner_texts()
    assert len(released) == 1 and released[0].startswith("Up to 20 member removals: Member removal threshold")
    assert len(_members(ad, a)) == 30, "nothing is released before the confirmation"
    _check_page(page, "the Allow confirmation")
    page.click("button:has-text('Allow and reconcile now')")
    page.wait_for_url(re.compile(r"/\?done="))
    assert "Allowed once: 20 removals" in _done(page)
    _wait(lambda: len(_members(ad, a)) == 10, "the allowed removals to reach AD")


def test_the_configuration_page_and_its_testers_work_in_place(browser: Any, console: RunningConsole) -> None:
    page = sign_in(browser, console, console.viewer)  # read-only: a viewer may use it
    page.click("nav >> text=Configuration")
    main = page.locator("main").inner_text()
    for setting in ("scope.mode", "target.target_ou", "users.provision", "safety.member_removal_percent"):
        assert setting in main
    assert "bind_password" not in main and "client_secret" not in main
    # The rule tester: the answer replaces the result region, the page stays.
    page.fill("#rule-text", "user.displayName -ne null")
    page.click("button:has-text('Test the rule')")
    result = page.locator("#rule-result")
    _wait(lambda: "users match" in result.inner_text(), "the rule test's result")
    assert page.url.endswith("/config")
    m = re.search(r"(\d+) of (\d+) users match", result.inner_text())
    assert m and int(m.group(1)) > 0
    page.fill("#rule-text", "user.department -eq")
    page.click("button:has-text('Test the rule')")
    _wait(lambda: "state-bad" in (result.locator("p").first.get_attribute("class") or ""), "the parse error")
    # The expression tester over group A of the replica.
    page.fill("#expr-text", 'Append([displayName], "-AD")')
    page.fill("#expr-object", console.names["A"])
    page.click("button:has-text('Evaluate')")
    value = page.locator("#expression-result pre")
    _wait(lambda: value.count() == 1, "the expression's value")
    assert value.inner_text() == console.names["A"] + "-AD"
    screenshot(page, "console-config.png")
    _check_page(page, "the configuration page with results")


def test_the_status_page_is_usable_from_the_keyboard(browser: Any, console: RunningConsole) -> None:
    page = sign_in(browser, console, console.operator)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for _ in range(60):  # Tab to the Pause button, then press it with the keyboard
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Pause":
            break
    else:
        raise AssertionError("the Pause button cannot be reached with Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Paused" in _done(page)
    page.locator("button:has-text('Resume')").focus()
    with page.expect_navigation():  # from one /?done= page to the next
        page.keyboard.press("Enter")
    assert "Resumed" in _done(page)


def test_a_cli_pause_is_seen_by_the_running_service_and_its_console(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    """The flag is in the shared state: `writeback pause` next to a running service stops its writing, and
    the console says so on every page before the service's next cycle."""
    a = console.groups["A"]
    paused = console.ws.run("pause")
    assert paused.code == 0, paused.err
    page = sign_in(browser, console, console.viewer)
    assert "Paused: writeback writes nothing to AD." in page.locator("main").inner_text()
    assert "An operator can resume it on the status page." in page.locator("main").inner_text()
    assert page.locator("#state").inner_text() == "Paused"
    leaver = console.users[0]
    cloud.remove_member(a, leaver["id"])
    before = _status(console)["lastExecution"]
    r = httpx.post(console.url + "/api/reconcile", headers=console.bearer(console.operator), timeout=30)
    assert r.status_code == 202
    _wait(_cycle_after(console, before), "the paused cycle")
    assert leaver["onPremisesDistinguishedName"].lower() in _members(ad, a), "nothing written while paused"
    assert console.ws.run("resume").code == 0
    before = _status(console)["lastExecution"]
    r = httpx.post(console.url + "/api/reconcile", headers=console.bearer(console.operator), timeout=30)
    _wait(_cycle_after(console, before), "the cycle after the resume")
    _wait(lambda: leaver["onPremisesDistinguishedName"].lower() not in _members(ad, a), "the removal in AD")
    page.goto(console.url + "/")
    assert "writes nothing to AD" not in page.locator("main").inner_text()
