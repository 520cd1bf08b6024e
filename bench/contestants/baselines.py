"""Baselines: what a team would write instead of CAVRA, none of which persists anything.

* ``requests_post``: ``requests.post`` per event (a new connection each time), the everyday script;
* ``requests_session``: the same with one ``requests.Session`` (keep-alive);
* ``apprise_json``: Apprise's ``json://`` notifier, one ``notify()`` per event;
* ``aiohttp_32``: the ceiling, a bare aiohttp client with 32 requests in flight on one pooled session.

Each posts the same body CAVRA's webhook connector sends (the ``cavra.webhook.evidence.v1`` envelope),
built here without CAVRA's code, to the sink on 127.0.0.1, and checks every answer is a 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.contestants import Contestant, Measured

HOOK_PATH = "/hook"


def envelope(event: dict[str, Any]) -> dict[str, Any]:
    """The webhook envelope, as the receiver sees it."""
    return {
        "type": event["event_type"],
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "schema": "cavra.webhook.evidence.v1",
        "event_id": event["event_id"],
        "session_id": event.get("session_id"),
        "data": event,
    }


class RequestsPost(Contestant):
    key = "requests_post"
    label = "requests.post loop (no persistence)"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.url = base_url + HOOK_PATH

    def setup(self) -> None:
        import requests

        self._requests = requests

    def run(self, events: list[dict[str, Any]]) -> Measured:
        post = self._requests.post
        t0 = time.perf_counter()
        done = 0
        for event in events:
            resp = post(self.url, json=envelope(event), timeout=10)
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")
            done += 1
            if done % 256 == 0 and self.over_budget():
                break
        return done, time.perf_counter() - t0


class RequestsSession(RequestsPost):
    key = "requests_session"
    label = "requests.Session loop (no persistence)"

    def run(self, events: list[dict[str, Any]]) -> Measured:
        with self._requests.Session() as session:
            t0 = time.perf_counter()
            done = 0
            for event in events:
                resp = session.post(self.url, json=envelope(event), timeout=10)
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}")
                done += 1
                if done % 256 == 0 and self.over_budget():
                    break
            return done, time.perf_counter() - t0


class AppriseJson(Contestant):
    key = "apprise_json"
    label = "Apprise json:// notifier (no persistence)"

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.url = "json://" + base_url.removeprefix("http://") + HOOK_PATH

    def setup(self) -> None:
        import apprise

        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(self.url):
            raise RuntimeError(f"Apprise refused the URL {self.url}")
        self.note = f"apprise {getattr(apprise, '__version__', '?')}, one notify() per event"

    def run(self, events: list[dict[str, Any]]) -> Measured:
        notify = self._apprise.notify
        t0 = time.perf_counter()
        done = 0
        for event in events:
            body = json.dumps(envelope(event), separators=(",", ":"))
            if not notify(body=body, title=str(event["event_type"])):
                raise RuntimeError("Apprise reported a failed notification")
            done += 1
            if done % 256 == 0 and self.over_budget():
                break
        return done, time.perf_counter() - t0


class AiohttpCeiling(Contestant):
    key = "aiohttp_32"
    label = "bare aiohttp, 32 in flight (ceiling, no persistence)"

    def __init__(self, base_url: str, concurrency: int = 32) -> None:
        super().__init__()
        self.url = base_url + HOOK_PATH
        self.concurrency = concurrency

    def run(self, events: list[dict[str, Any]]) -> Measured:
        return asyncio.run(self._run(events))

    async def _run(self, events: list[dict[str, Any]]) -> Measured:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            queue = iter(events)
            failures: list[int] = []
            done = 0

            async def lane() -> None:
                nonlocal done
                for event in queue:
                    body = json.dumps(envelope(event), separators=(",", ":")).encode()
                    headers = {"Content-Type": "application/json"}
                    async with session.post(self.url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            failures.append(resp.status)
                    done += 1
                    if done % 64 == 0 and self.over_budget():
                        return

            t0 = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - t0
        if failures:
            raise RuntimeError(f"{len(failures)} requests failed (HTTP {failures[0]})")
        return done, elapsed
