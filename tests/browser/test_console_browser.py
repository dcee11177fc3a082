"""The console in headless Chromium (Debian's package, driven by Playwright) against the sandbox, served by
`writeback run` as a subprocess: sign in, status, log filters and a row's steps, provision on demand, Allow a
held mass removal, a viewer refused an operator's action; and /metrics, /healthz, /readyz over HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import RunningConsole, screenshot, sign_in

pytestmark = [pytest.mark.samba, pytest.mark.emulator]


def _wait(check: Callable[[], object], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _facts(page: Any) -> dict[str, str]:
    """The page's definition lists as {term: description}."""
    dl = page.locator("dl.facts")
    terms, values = dl.locator("dt").all_inner_texts(), dl.locator("dd").all_inner_texts()
    return dict(zip(terms, values, strict=True))


def _member_dns(ad: Any, gid: str) -> set[str]:
    g = ad.anchored(gid)
    assert g is not None, f"no AD group anchored to {gid}"
    return {m.lower() for m in g.get("member", [])}


def test_sign_in_and_see_the_status(browser: Any, console: RunningConsole) -> None:
    # A wrong token is refused on the sign-in page.
    context = browser.new_context()
    page = context.new_page()
    page.goto(console.url + "/")
    page.fill("#token", "not-a-token")
    page.click("button:has-text('Sign in')")
    assert page.locator("[role=alert]").inner_text() == "That token is not valid."
    context.close()

    page = sign_in(browser, console, console.operator)
    assert page.locator("h1").inner_text() == "Status"
    assert page.locator("header .who span").inner_text() == "olga (operator)"
    assert page.locator("#state").inner_text() == "In sync"
    facts = _facts(page)
    assert facts["Managed groups"] == "2"
    # A SQLite state: this server is active and holds the state's writer lock itself.
    assert facts["Role"] == "active"
    assert facts["Active instance"].endswith(f":{console.proc.pid} (this one)")
    assert facts["Last successful cycle"] != "never"
    assert facts["Last cycle that wrote to AD"] != "never"  # the first cycle created both groups
    assert page.locator("button:has-text('Reconcile now')").is_visible()
    assert page.locator("svg[role=img] rect").count() >= 1  # the rows-per-day chart has bars


def test_filter_the_log_and_open_a_rows_steps(browser: Any, console: RunningConsole, ad: Any) -> None:
    page = sign_in(browser, console, console.operator)
    page.click("nav >> text=Provisioning log")
    name_a = console.names["A"]
    page.select_option("select[name=action]", "create")
    page.fill("input[name=group]", name_a)
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"/log\?.*action=create"))
    rows = page.locator("table.log tbody tr")
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[2] == "create" and cells[3] == "success" and cells[4] == name_a

    # The link opens the details beside the list (htmx; tests/browser/test_console_pages.py); its href is the
    # same details as a page of their own.
    page.goto(console.url + (rows.first.locator("a:has-text('Steps')").get_attribute("href") or ""))
    page.wait_for_url(re.compile(r"/log/\d+$"))
    assert page.locator("h1").inner_text() == f"create · {name_a}"
    steps = page.locator("ol.steps li").all_inner_texts()
    assert steps, "the row has no steps"
    assert any("(success)" in s for s in steps)
    summary = _facts(page)
    assert summary["Status"] == "success"
    assert summary["Target identity (AD)"].lower() == ad.anchored(console.groups["A"])["dn"].lower()
    assert console.groups["A"] in summary["Source identity (cloud group)"]
    assert screenshot(page, "console-log-row.png").stat().st_size > 10_000


def test_provision_a_group_on_demand_and_watch_its_steps(
    browser: Any, console: RunningConsole, cloud: Any, ad: Any
) -> None:
    b = console.groups["B"]
    newcomer = console.users[27]  # in A, not yet in B
    cloud.add_member(b, newcomer["id"])
    time.sleep(1)
    # The service polls once an hour here: only provisioning on demand writes the newcomer now.
    assert newcomer["onPremisesDistinguishedName"].lower() not in _member_dns(ad, b)

    page = sign_in(browser, console, console.operator)
    page.click("nav >> text=Provision on demand")
    page.fill("#q", console.names["B"])
    page.click("button:has-text('Search')")
    page.locator("ul.matches li", has_text=b).locator("button:has-text('Provision')").click()
    page.wait_for_url(re.compile(r"/provision/[0-9a-f]+$"))
    # htmx refreshes the steps every second until the run is done.
    page.wait_for_selector("text=Done, succeeded: every step succeeded.", timeout=90_000)
    steps = page.locator("#steps ol.steps > li").all_inner_texts()
    kinds = [s.split(" ", 1)[0] for s in steps]
    assert kinds[:2] == ["import", "import"]
    assert {"scoping", "matching", "processing", "export"} <= set(kinds)
    assert any(s.startswith("export (success)") for s in steps), steps
    assert newcomer["onPremisesDistinguishedName"].lower() in _member_dns(ad, b)
    # The run links to the log entries it wrote: the operator's request (by name) and the member add.
    page.click("text=The log entries of this run")
    page.wait_for_url(re.compile(r"/log\?run=[0-9a-f]+$"))
    rows = page.locator("table tbody tr").all_inner_texts()
    assert any("provision" in r for r in rows) and any("add_members" in r for r in rows), rows


def test_allow_a_held_mass_removal(browser: Any, console: RunningConsole, cloud: Any, ad: Any) -> None:
    a = console.groups["A"]
    users = console.users
    for u in users[:20]:  # 20 of the 55 managed member values (36 %, over the default 30 %) leave group A
        cloud.remove_member(a, u["id"])

    page = sign_in(browser, console, console.operator)
    page.click("button:has-text('Reconcile now')")

    def held() -> bool:
        page.goto(console.url + "/")
        return page.locator("#state").inner_text() == "Changes held"

    _wait(held, "the status to show the held removals")
    assert "Member removal threshold exceeded: 20 of" in page.locator("#held-title + ul").inner_text()
    assert len(_member_dns(ad, a)) == 30  # nothing removed yet
    page.click("button:has-text('Allow…')")
    page.click(
        "button:has-text('Allow and reconcile now')"
    )  # the confirmation (tests/browser/test_console_look.py)
    _wait(lambda: len(_member_dns(ad, a)) == 10, "the allowed removals to reach AD")
    assert _member_dns(ad, a) == {u["onPremisesDistinguishedName"].lower() for u in users[20:]}

    def ok() -> bool:
        page.goto(console.url + "/")
        return page.locator("#state").inner_text() == "In sync"

    _wait(ok, "the status to be ok again")
    assert page.locator("button:has-text('Allow…')").count() == 0
    # The log says who allowed it: the token's name, never the token.
    page.goto(console.url + "/log?action=allow")
    cells = page.locator("table.log tbody tr").first.locator("td").all_inner_texts()
    assert cells[2:6] == ["allow", "info", "", "olga"], cells


def test_a_viewer_cannot_do_an_operators_action(browser: Any, console: RunningConsole) -> None:
    page = sign_in(browser, console, console.viewer)
    assert page.locator("header .who span").inner_text() == "vic (viewer)"
    assert page.locator("button:has-text('Reconcile now')").count() == 0
    assert page.locator("button:has-text('Clear quarantine')").count() == 0
    page.click("nav >> text=Provision on demand")
    page.fill("#q", console.names["A"])
    page.click("button:has-text('Search')")
    assert page.locator("ul.matches li").all_inner_texts() == [f"{console.names['A']} {console.groups['A']}"]
    assert page.locator("button:has-text('Provision')").count() == 0
    assert page.locator("text=Provisioning needs the operator role.").is_visible()
    # Posting the operator's form anyway (with the session's own CSRF token) is refused.
    csrf = json.loads(page.get_attribute("body", "hx-headers") or "{}").get("X-CSRF-Token")
    assert csrf, "the page carries no CSRF token"
    r = page.request.post(console.url + "/actions/reconcile", form={"csrf": csrf})
    assert r.status == 403 and "needs the operator role" in r.text()
    r = page.request.post(console.url + "/provision", form={"csrf": csrf, "group": console.groups["A"]})
    assert r.status == 403
    # And so is the API with the viewer's bearer token; the operator's is accepted.
    r2 = httpx.post(console.url + "/api/reconcile", headers=console.bearer(console.viewer), timeout=30)
    assert r2.status_code == 403
    r3 = httpx.post(console.url + "/api/reconcile", headers=console.bearer(console.operator), timeout=30)
    assert r3.status_code < 300, r3.text


def test_metrics_and_health_endpoints_over_http(console: RunningConsole) -> None:
    assert console.get("/healthz").status_code == 200  # no sign-in
    ready = console.get("/readyz")
    assert ready.status_code == 200 and ready.text.strip() == "ok"
    assert console.get("/metrics").status_code == 401  # console.metrics_public is off
    assert console.get("/api/status").status_code == 401
    r = console.get("/metrics", console.viewer)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text

    def value(sample: str) -> float:
        m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        assert m, f"{sample} missing from /metrics"
        return float(m.group(1))

    assert value('writeback_cycles_total{result="success"}') >= 1
    assert value("writeback_cycle_duration_seconds_count") >= 1
    assert value('writeback_status{status="ok"}') == 1
    assert value("writeback_quarantined") == 0
    assert value("writeback_leader") == 1
    assert value("writeback_managed_groups") == 2
    assert value('writeback_changes_total{result="success"}') >= 2
    assert value("writeback_graph_requests_total") >= 1
    assert value("writeback_last_success_timestamp_seconds") > time.time() - 600
    assert value('writeback_ldap_operations_total{kind="add",result="success"}') >= 2
    assert value('writeback_ldap_operations_total{kind="add",result="error"}') == 0
    assert value("writeback_managed_memberships") == 55  # groups A (30) and B (25), written at start
    assert 0 <= value("writeback_replica_lag_seconds") < 3600 + 60
    assert value("writeback_graph_throttle_wait_seconds_total") >= 0
