"""The README's console screenshots (run through scripts/screenshots, which sets up the virtualenv).

Against a console given (--url, --token), or the sandbox in $WRITEBACK_SANDBOX_DIR: brought up when there is
none (`writeback sandbox up`), and `writeback run` started on its writeback.toml when its console does not
answer (stopped again at the end). Pictures: console-status.png, console-group.png (the managed group with
the most members, preferring one with a skipped member), console-log.png (the log with a row's details pane
open: a skipped-members row when there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("WRITEBACK_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 860}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"writeback run ended with code {proc.returncode} before its console was ready")
        try:
            if httpx.get(url + "/readyz", timeout=3).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    sys.exit(f"the console at {url} was not ready within {timeout:.0f} s")


def _sandbox(directory: Path) -> dict[str, Any]:
    info = directory / "sandbox.json"
    if not info.exists():
        print(f"no sandbox in {directory}: writeback sandbox up", file=sys.stderr)
        subprocess.run(["writeback", "sandbox", "up", "--dir", str(directory)], check=True)
    data: dict[str, Any] = json.loads(info.read_text(encoding="utf-8"))
    if not data.get("console_url") or not data.get("console_token"):
        sys.exit(f"{info} has no console_url/console_token: run `writeback sandbox up --dir {directory}` again")
    return data


def _get(url: str, token: str, path: str) -> Any:
    r = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    r.raise_for_status()
    return r.json()


def _pick_group(url: str, token: str) -> str:
    groups = _get(url, token, "/api/groups?size=500")["value"]
    if not groups:
        sys.exit("the console manages no group yet: wait for the first cycle, then run this again")
    skipped = [g for g in groups if g["skipped"]]
    return str((skipped or groups)[0]["cloud_id"])


def _pick_row(url: str, token: str) -> int:
    for query in ("/api/log?action=skip_members&limit=1", "/api/log?action=add_members&limit=1", "/api/log?limit=1"):
        rows = _get(url, token, query)["value"]
        if rows:
            return int(rows[0]["id"])
    sys.exit("the provisioning log is empty: wait for the first cycle, then run this again")


def shoot(url: str, token: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    group, row = _pick_group(url, token), _pick_row(url, token)
    made = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(60_000)
            page.goto(url + "/signin")
            page.fill("#token", token)
            page.click("button:has-text('Sign in')")
            page.wait_for_url(url + "/")
            made.append(out / "console-status.png")
            page.screenshot(path=str(made[-1]), full_page=True)
            page.goto(f"{url}/groups/{group}")
            made.append(out / "console-group.png")
            page.screenshot(path=str(made[-1]), full_page=True)
            page.goto(url + "/log?limit=25")
            link = page.locator(f"#row-{row} a[hx-get]")
            if link.count() == 0:  # not among the newest 25: the page of older rows that starts with it
                page.goto(f"{url}/log?before={row + 1}&limit=25")
                link = page.locator(f"#row-{row} a[hx-get]")
            link.click()
            page.locator("#details article").wait_for()
            made.append(out / "console-log.png")
            page.screenshot(path=str(made[-1]), full_page=True)
        finally:
            browser.close()
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running console, e.g. http://127.0.0.1:8123")
    ap.add_argument("--token", help="a console token for --url (viewer is enough)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where to write (docs/img)")
    args = ap.parse_args()
    if bool(args.url) != bool(args.token):
        ap.error("give --url and --token together, or neither (the sandbox's console)")
    proc: subprocess.Popen[bytes] | None = None
    url, token = args.url, args.token
    if not url:
        directory = Path(os.environ.get("WRITEBACK_SANDBOX_DIR", "/var/tmp/writeback-sandbox"))
        info = _sandbox(directory)
        url, token = info["console_url"], info["console_token"]
        if not _answers(url):
            print(f"starting writeback run on {directory / 'writeback.toml'}", file=sys.stderr)
            log = open(directory / "screenshots-run.log", "wb")  # noqa: SIM115 - kept open while it runs
            proc = subprocess.Popen(
                [sys.executable, "-m", "writeback", "--config", str(directory / "writeback.toml"), "run"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
    try:
        if proc is not None:
            _wait_ready(url, proc)
        for path in shoot(url.rstrip("/"), token, args.out):
            print(path)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
