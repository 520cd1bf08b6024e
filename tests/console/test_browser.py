"""The console in a real browser: ``cavra serve`` as a process on a store filled by real deliveries,
headless Chromium (Playwright) signing in through the form, reading the overview's alerts, filtering the
history and opening a delivery's attempts; no script error and no Content-Security-Policy violation."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from .conftest import TOKENS, Seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ("overview.png", "delivery.png", "destinations.png", "trends.png")
STRIPPED = (
    "CAVRA_API_TOKENS_FILE",
    "CAVRA_API_TOKEN_ADMIN",
    "CAVRA_API_TOKEN_OPERATOR",
    "CAVRA_CONNECTOR_CONFIG",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless browser test: {CHROMIUM} is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cavra_command() -> list[str]:
    script = Path(sys.executable).parent / "cavra"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from cavra.cli.main import main; main()"]


async def start_serve(seed: Seed, tmp: Path) -> tuple[asyncio.subprocess.Process, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED and not k.startswith("CAVRA_STORE")}
    env.update(seed.env)
    env["CAVRA_API_TOKEN_AUDITOR"] = TOKENS["auditor"]
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp / "serve.log"
    argv = [*cavra_command(), "serve", "--port", str(port), "--config", str(seed.config_path)]
    argv += ["--store", seed.store_url]
    with open(log, "wb") as fh:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=fh, stderr=fh)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.returncode is None, f"cavra serve exited: {log.read_text()[-2000:]}"
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return proc, url, log
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"cavra serve not ready: {log.read_text()[-2000:]}"
            await asyncio.sleep(0.05)


async def test_console_in_headless_chromium(seed: Seed, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    proc, url, log = await start_serve(seed, tmp_path)
    problems: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1400, "height": 900})
                page = await context.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                external: list[str] = []
                page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))

                # not signed in: the login form; sign in with the auditor's token
                await page.goto(f"{url}/console")
                await expect(page).to_have_url(f"{url}/console/login?next=%2Fconsole")
                await page.fill("input[name=token]", TOKENS["auditor"])
                await page.click("button[type=submit]")
                await expect(page).to_have_url(f"{url}/console")
                cookies = {c["name"]: c for c in await context.cookies()}
                session = cookies["cavra_console"]
                assert session["httpOnly"] is True and session["sameSite"] == "Strict"
                assert TOKENS["auditor"] not in session["value"]  # a session id, never the token
                assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

                # the overview: the critical alert is there, in colour
                critical = page.locator("#board-release tr.alert-critical")
                await expect(critical).to_be_visible()
                await expect(critical).to_contain_text("rollback_delivery_failed")
                colour = await critical.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
                assert colour == "rgb(192, 16, 72)", colour  # the stylesheet loaded (CSP allows 'self')
                await expect(page.locator("#board-publication .all-clear")).to_have_text("No alerts.")
                await page.screenshot(path=str(shots / "overview.png"), full_page=True)

                # the history, filtered to failures, then the delivery's attempts
                await page.click("nav >> text=Deliveries")
                await page.select_option("select[name=success]", "false")
                await page.click("button:has-text('Filter')")
                await expect(page).to_have_url(re.compile(r"/console/deliveries\?(.+&)?success=false(&|$)"))
                rows = page.locator("table.history tbody tr")
                await expect(rows).to_have_count(1)
                await rows.first.locator("a").click()
                await expect(page).to_have_url(f"{url}/console/deliveries/{seed.ids['rollback']}#p-webhook")
                attempts = page.locator("table.attempts")
                await expect(attempts).to_be_visible()
                await expect(page.locator("table.attempts > tbody > tr")).to_have_count(3)
                await expect(page.locator("table.attempts > tbody > tr").first).to_contain_text("HTTP 503")
                await expect(attempts.locator("table.headers").first).to_be_visible()
                await expect(page.locator("dl.hashes")).to_contain_text("record_sha256")
                await page.screenshot(path=str(shots / "delivery.png"), full_page=True)

                # the destinations, each with its state and last delivery, and one destination's trend
                await page.click("nav >> text=Destinations")
                await expect(page.locator("table.destinations tbody tr").first).to_be_visible()
                await page.screenshot(path=str(shots / "destinations.png"), full_page=True)
                await page.goto(f"{url}/console/trends?span=30d&destination=webhook")
                await expect(page.locator("svg.trend rect.bad")).to_have_count(30)
                await page.screenshot(path=str(shots / "trends.png"), full_page=True)

                # log out: the cookie is gone and the console asks for the token again
                await page.click("button:has-text('Log out')")
                await expect(page).to_have_url(f"{url}/console/login")
                assert "cavra_console" not in {c["name"] for c in await context.cookies()}
                await page.goto(f"{url}/console/integrations")
                await expect(page.locator("input[name=token]")).to_be_visible()
            finally:
                await browser.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert not problems, problems  # no script error, no CSP violation
    assert not external, external  # nothing loaded from anywhere else
    for name in SHOTS:
        assert (shots / name).stat().st_size > 10_000
    text = log.read_text()
    assert TOKENS["auditor"] not in text
    for value in seed.env.values():
        if not value.startswith("http"):
            assert value not in text
    keep = os.environ.get("CAVRA_CONSOLE_SCREENSHOTS")
    if keep:
        for name in SHOTS:
            shutil.copy(shots / name, Path(keep) / name)
