"""Fixtures for the browser tests: the e2e fixtures (the sandbox's emulator as the cloud, a private OU and
state) plus `writeback run` serving the console, and Debian's chromium driven by Playwright.

A missing browser or Playwright fails the tests with what to install; it never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import CloudAdmin, Workspace, ad, cloud, fresh_id, workspace
from tests.testbed.ad import AdView as AD
from writeback.console.auth import new_token, token_line
from writeback.testbed.sandbox.console import free_port

__all__ = ["ad", "assert_accessible", "assert_fits", "browser", "cloud", "console", "fresh_id", "workspace"]

CHROMIUM = os.environ.get("WRITEBACK_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(
    scope="package"
)  # Playwright's sync API keeps an event loop running: close it after these tests
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is not installed: pip install -e '.[test]' (it is in the test extra)",
            pytrace=False,
        )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `apt-get install -y chromium` (Playwright cannot download its own "
            "browsers here), or set WRITEBACK_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@dataclass
class RunningConsole:
    """`writeback run` serving the console for one workspace (OU, state) with two groups."""

    url: str
    operator: str
    viewer: str
    ws: Workspace
    groups: dict[str, str]  # "A"/"B" -> cloud id
    names: dict[str, str]  # "A"/"B" -> display name
    users: list[dict[str, Any]]
    proc: subprocess.Popen[str]
    log_file: Path
    pages: list[Any] = field(default_factory=list)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.bearer(token) if token else {}, timeout=30)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def _wait_ready(c: RunningConsole, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if c.proc.poll() is not None:
            raise AssertionError(f"writeback run ended (code {c.proc.returncode}): {c.log()[-3000:]}")
        try:
            r = httpx.get(c.url + "/readyz", timeout=5)
            last = f"{r.status_code} {r.text.strip()}"
            if r.status_code == 200:
                return
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(f"the console never became ready ({last}); service log: {c.log()[-3000:]}")


@pytest.fixture
def console(
    workspace: Any, cloud: CloudAdmin, ad: AD, fresh_id: str, tmp_path: Path
) -> Iterator[RunningConsole]:
    """Two cloud groups (A: 30 synced users, B: 25 of them: 55 managed member values, over the 50 from which
    the member removal threshold applies), applied by `writeback run` at its start. The poll
    interval is an hour, so after that first cycle only the console's actions (Reconcile now, Allow,
    provision on demand) make the service write."""
    users = cloud.synced_users()[:30]
    a = cloud.create_group(f"Console A {fresh_id}", [u["id"] for u in users])
    b = cloud.create_group(f"Console B {fresh_id}", [u["id"] for u in users[:25]])
    operator, viewer = new_token(), new_token()
    tokens = tmp_path / "console_tokens"
    tokens.write_text(token_line("olga", "operator", operator) + token_line("vic", "viewer", viewer))
    tokens.chmod(0o600)
    port = free_port()
    ws = workspace(
        [a, b],
        extra=f"""
[service]
listen = "127.0.0.1:{port}"
poll_interval = 3600
reconcile_interval = 3600
health_file = "{tmp_path / "health.json"}"

[console]
tokens_file = "{tokens}"
""",
    )
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
        viewer,
        ws,
        {"A": a, "B": b},
        {"A": f"Console A {fresh_id}", "B": f"Console B {fresh_id}"},
        users,
        proc,
        log_file,
    )
    try:
        _wait_ready(c)
        yield c
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = c.log()
        for secret in (operator, viewer):
            assert secret not in text, "a console token appeared in the service's log"
        assert proc.returncode == 0, f"writeback run ended with {proc.returncode}: {text[-3000:]}"


def sign_in(browser: Any, c: RunningConsole, token: str) -> Any:
    """A new browser context (its own cookies) signed in with ``token``; returns its page on the status."""
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(c.url + "/")
    assert "/signin" in page.url  # everything but the health endpoints needs sign-in
    page.fill("#token", token)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(c.url + "/")
    return page


def screenshot(page: Any, name: str) -> Path:
    """Saved under the test's temporary folder; with WRITEBACK_SCREENSHOTS=1 into docs/img/ (the README's
    pictures), so an ordinary test run leaves the checkout unchanged."""
    folder = SCREENSHOTS if os.environ.get("WRITEBACK_SCREENSHOTS") == "1" else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


# axe-core's impacts that fail a test: "serious" and "critical" (minor and moderate ones are reported by the
# assertion message of a failing page only).
BLOCKING_IMPACTS = ("serious", "critical")


def assert_accessible(page: Any, what: str) -> None:
    """Run axe-core (bundled by axe-playwright-python) on the page as it is now and fail on any serious or
    critical violation, naming each rule, its help text and the first offending elements."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.fail(
            "axe-playwright-python is not installed: pip install -e '.[test]' (it is in the test extra)",
            pytrace=False,
        )
    results = Axe().run(page)
    violations = results.response.get("violations", [])
    blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
    lines = [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + "; ".join(" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:3])
        for v in blocking
    ]
    assert not blocking, (
        f"{what} ({page.url}): axe-core found {len(blocking)} blocking violations:\n" + "\n".join(lines)
    )


def assert_fits(page: Any, what: str, width: int = 390) -> None:
    """At ``width`` CSS pixels the page has no sideways scroll (wide tables scroll in their own box)."""
    page.set_viewport_size({"width": width, "height": 844})
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (
        f"{what} ({page.url}) is {scroll} px wide at a {width} px viewport: it scrolls sideways"
    )
