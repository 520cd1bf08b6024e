"""Every console action in headless Chromium against ``cavra serve``, as each role.

An auditor's pages (every page, the new destinations page too) have no action form, and the auditor's
own POSTs are refused. Forged POSTs from a signed-in operator's browser are refused and change nothing:
no CSRF token, a wrong one, and a foreign ``Origin``. An operator and an admin each redeliver, replay
failed deliveries since a time, pause and resume a destination (from the destinations page), and
acknowledge an alert, through the forms (the browser's own Origin and the page's CSRF token); each
action is in ``/console/audit`` with the token's name. Every page fits 390 px for the operator (the
action forms included), and no page logs a script error or a CSP violation."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path
from typing import Any

import pytest

from .conftest import TOKENS, Seed
from .test_browser import CHROMIUM, CHROMIUM_ARGS, start_serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless browser test: {CHROMIUM} is not installed"),
]

FORM = {"content-type": "application/x-www-form-urlencoded"}


def pages(seed: Seed) -> list[str]:
    return [
        "/console",
        "/console/deliveries",
        "/console/publications",
        f"/console/deliveries/{seed.ids['rollback']}",
        "/console/queue",
        "/console/destinations",
        "/console/trends?span=24h",
        "/console/trends?destination=webhook&span=30d",
        "/console/integrations",
        "/console/audit",
    ]


async def _sign_in(browser: Any, url: str, role: str, width: int, problems: list[str]) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: problems.append(f"{role}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"{role}: {e}"))
    await page.goto(f"{url}/console/login")
    await page.fill("input[name=token]", TOKENS[role])  # type: ignore[index]
    await page.click("button[type=submit]")
    return context, page


async def _auditor(browser: Any, url: str, seed: Seed, problems: list[str]) -> None:
    from playwright.async_api import expect

    context, page = await _sign_in(browser, url, "auditor", 1280, problems)
    for path in pages(seed):
        await page.goto(url + path)
        await expect(page.locator("form[action^='/console/actions/']")).to_have_count(0)
        await expect(page.locator("button:has-text('Pause'), button:has-text('Acknowledge')")).to_have_count(
            0
        )
    fields = {"provider": "webhook", "minutes": "60", "csrf": "0" * 64}
    resp = await context.request.post(f"{url}/console/actions/pause", form=fields, headers={"Origin": url})
    assert resp.status == 403, resp.status
    await context.close()


async def _forged(browser: Any, url: str, problems: list[str]) -> None:
    """A signed-in operator's browser, made to POST without the page's token or from another origin."""
    context, page = await _sign_in(browser, url, "operator", 1280, problems)
    await page.goto(f"{url}/console/destinations")
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert token and len(token) == 64
    target = f"{url}/console/actions/pause"
    pause = {"provider": "webhook", "minutes": "60"}
    for fields, origin in (
        (pause, url),  # no CSRF token
        ({**pause, "csrf": "f" * 64}, url),  # a wrong one
        ({**pause, "csrf": token}, "http://evil.example"),  # the right one, from a foreign page
    ):
        resp = await context.request.post(target, form=fields, headers={"Origin": origin})
        assert resp.status == 403, (fields.get("csrf"), origin, resp.status)
    await page.goto(f"{url}/console/audit")
    assert "pause_destination" not in await page.content()  # refused before anything was done
    await context.close()


async def _act(browser: Any, url: str, seed: Seed, role: str, problems: list[str]) -> None:
    from playwright.async_api import expect

    context, page = await _sign_in(browser, url, role, 390, problems)
    await page.goto(f"{url}/console/deliveries/{seed.ids['page0']}")
    await page.click("button:has-text('Redeliver')")
    await expect(page.locator("h1")).to_have_text("Done: redeliver")

    await page.goto(f"{url}/console/queue")
    replay = page.locator("form[action='/console/actions/replay']")
    await replay.locator("input[name=since]").fill("2000-01-01T00:00")
    await replay.locator("button:has-text('Replay')").click()
    await expect(page.locator("h1")).to_have_text("Done: replay failed")

    await page.goto(f"{url}/console/destinations")
    row = page.locator("#destinations-table tbody tr", has_text="sentinel")
    await row.locator("select[name=minutes]").select_option("0")
    await row.locator("button:has-text('Pause')").click()
    await expect(page.locator("h1")).to_have_text("Done: pause destination")
    await expect(page.locator(".result")).to_contain_text("until it is resumed")
    await page.goto(f"{url}/console/destinations")
    row = page.locator("#destinations-table tbody tr", has_text="sentinel")
    await expect(row).to_contain_text(f"paused by cavra_api_token_{role}")
    await page.goto(f"{url}/console/queue")
    await expect(page.locator("#paused-note")).to_contain_text("sentinel")
    await page.goto(f"{url}/console/destinations")
    await (
        page.locator("#destinations-table tbody tr", has_text="sentinel")
        .locator("button:has-text('Resume')")
        .click()
    )
    await expect(page.locator("h1")).to_have_text("Done: resume destination")

    await page.goto(f"{url}/console")
    ack = page.locator("form.ack").first
    if await ack.count():  # the first role acknowledges the alert; the second sees it acknowledged
        await ack.locator("button:has-text('Acknowledge')").click()
        await expect(page.locator("h1")).to_have_text("Done: silence alert")
        await page.goto(f"{url}/console")
    await expect(page.locator(".badge.acked").first).to_contain_text("acknowledged by")

    await page.goto(f"{url}/console/audit")
    mine = page.locator("table.audit tbody tr", has_text=f"cavra_api_token_{role}")
    texts = " ".join(await mine.all_inner_texts())
    for action in ("redeliver", "replay_failed", "pause_destination", "resume_destination"):
        assert action in texts, (role, action, texts)

    for path in pages(seed):  # every page fits 390 px with the action forms on it
        await page.goto(url + path)
        width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (role, path, width)
    await context.close()


async def test_every_action_as_each_role_in_headless_chromium(seed: Seed, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    env = {
        **seed.env,
        "CAVRA_API_TOKEN_OPERATOR": TOKENS["operator"],
        "CAVRA_API_TOKEN_ADMIN": TOKENS["admin"],
    }
    proc, url, _log = await start_serve(dataclasses.replace(seed, env=env), tmp_path)
    problems: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                await _auditor(browser, url, seed, problems)
                await _forged(browser, url, problems)
                for role in ("operator", "admin"):
                    await _act(browser, url, seed, role, problems)
            finally:
                await browser.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    # the forged POSTs answer 403 pages, which Chromium reports as failed resource loads: nothing else
    assert not problems, problems
