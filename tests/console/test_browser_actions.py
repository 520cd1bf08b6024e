"""The console's actions in headless Chromium against ``cavra serve``: an operator signs in and redelivers
through the form (the browser's own Origin and the page's CSRF token), pauses and resumes a provider, and
finds each in the audit trail; an auditor's pages have no action button; no script error or CSP report."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import pytest

from .conftest import TOKENS, Seed
from .test_browser import CHROMIUM, CHROMIUM_ARGS, start_serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless browser test: {CHROMIUM} is not installed"),
]


async def test_actions_in_headless_chromium(seed: Seed, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    both = dataclasses.replace(seed, env={**seed.env, "CAVRA_API_TOKEN_OPERATOR": TOKENS["operator"]})
    proc, url, _log = await start_serve(both, tmp_path)
    problems: list[str] = []
    target = seed.ids["page0"]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                # an auditor: no action button anywhere
                auditor = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await auditor.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                await page.goto(f"{url}/console/login")
                await page.fill("input[name=token]", TOKENS["auditor"])
                await page.click("button[type=submit]")
                for path in ("/console", "/console/queue", f"/console/deliveries/{target}"):
                    await page.goto(url + path)
                    await expect(page.locator("form[action^='/console/actions/']")).to_have_count(0)
                await auditor.close()

                # an operator: redeliver, pause and resume, all in the audit trail
                operator = await browser.new_context(viewport={"width": 390, "height": 900})
                page = await operator.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(f"{url}/console/login")
                await page.fill("input[name=token]", TOKENS["operator"])
                await page.click("button[type=submit]")
                await page.goto(f"{url}/console/deliveries/{target}")
                await page.click("button:has-text('Redeliver')")
                await expect(page.locator("h1")).to_have_text("Done: redeliver")
                await page.goto(f"{url}/console/queue")
                row = page.locator("table.breakers tr", has_text="webhook")
                await row.locator("select[name=minutes]").select_option("60")
                await row.locator("button:has-text('Pause')").click()
                await expect(page.locator("h1")).to_have_text("Done: pause provider")
                await page.goto(f"{url}/console/queue")
                await (
                    page.locator("table.breakers tr", has_text="webhook")
                    .locator("button:has-text('Resume')")
                    .click()
                )
                await expect(page.locator("h1")).to_have_text("Done: resume provider")
                await page.goto(f"{url}/console/audit")
                rows = page.locator("table.audit tbody tr")
                await expect(rows).to_have_count(3)
                await expect(rows.first).to_contain_text("resume_provider")
                await expect(rows.last).to_contain_text("redeliver")
                width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], width
                await operator.close()
            finally:
                await browser.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    assert not problems, problems
