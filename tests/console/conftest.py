"""Console test kit: a store filled by real deliveries to the emulators, the app behind httpx, and a small
HTML reader (tables, links, forms) so tests assert on what a browser would show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from cavra.api.app import create_app
from cavra.api.auth import ApiToken, Role, TokenSet, hash_token
from cavra.api.settings import ApiSettings
from cavra.config import LoadedConfig, load_config
from cavra.delivery.policy import RetryPolicy
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.governance import service as governance
from cavra.store import Store, open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "release"
PROMOTION = EXAMPLES / "rollout-promotion-execution" / "rollout-promotion-execution.json"
ROLLBACK = EXAMPLES / "rollout-rollback-execution" / "rollout-rollback-execution.json"
EXPORT_DIR = EXAMPLES / "endpoint-management-export"
EXPORT = EXPORT_DIR / "endpoint-management-export-manifest.json"

TOKENS: dict[Role, str] = {
    "admin": "console-admin-4e1b9c7d2a8f6053",
    "operator": "console-operator-8b2d6f0a1c9e7354",
    "auditor": "console-auditor-3f7a1d9c5e2b8046",
}
MALICIOUS = '<script>alert("xss")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;"
PAGE_EVENT = "cavra.console.page_test"
PAGE_EVENTS = 5
BASE_URL = "http://console.test"
LOOPBACK = ("127.0.0.1", 50123)
POLICY = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)


def token_set() -> TokenSet:
    return TokenSet(tuple(ApiToken(f"{role}-console", role, hash_token(v)) for role, v in TOKENS.items()))


def bearer(role: Role = "auditor") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- the seeded store ----------------------------------------------------------------------------------
@dataclass
class Seed:
    """What the store holds: the config and environment it was delivered with, and the deliveries."""

    srv: EmulatorServer
    config_path: Path
    env: dict[str, str]
    store_url: str
    ids: dict[str, str] = field(default_factory=dict)

    def store(self) -> Store:
        return open_store(self.store_url)


async def seed_store(store: Store, loaded: LoadedConfig, srv: EmulatorServer) -> dict[str, str]:
    """Real deliveries to the emulators: a retried success, a multi-provider release delivery, a failed
    rollback (a critical alert), a publication, and a few more for paging. Returns their delivery ids."""
    ids: dict[str, str] = {}
    governance.upsert_integration(
        store, {"integration_id": "splunk", "provider": "splunk", "labels": {"team": "soc"}}
    )
    governance.upsert_integration(
        store, {"integration_id": "hook", "provider": "webhook", "display_name": MALICIOUS}
    )
    srv.hub.add_fault("splunk", Fault(status=503, count=1))
    done = await governance.deliver_integration(
        store, loaded, "splunk", {"event_type": MALICIOUS, "session_id": "s-xss"}, retries=2, policy=POLICY
    )
    ids["retried"] = done["id"]
    done = await governance.deliver_promotion_audit(
        store, loaded, load(PROMOTION), provider="webhook,sentinel", retries=1, policy=POLICY
    )
    # one job, and so one stored record, per provider
    assert "deliveries" in done, json.dumps(done)
    for item in done["deliveries"]:
        ids[f"promotion-{item['provider']}"] = item["delivery_id"]
    assert len(done["delivery_ids"]) == 2
    srv.hub.add_fault("webhook", Fault(status=503, count=3))
    done = await governance.deliver_rollback_execution(
        store, loaded, load(ROLLBACK), provider="webhook", retries=2, policy=POLICY
    )
    ids["rollback"] = done["id"]
    done = await governance.publish_endpoint_export(
        store, loaded, load(EXPORT), provider="jamf", retries=1, base_dir=EXPORT_DIR, policy=POLICY
    )
    ids["publication"] = done["id"]
    for n in range(PAGE_EVENTS):
        event = {"event_type": PAGE_EVENT, "session_id": f"page-{n}", "n": n}
        done = await governance.deliver_integration(store, loaded, "hook", event, retries=1, policy=POLICY)
        ids[f"page{n}"] = done["id"]
    return ids


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with EmulatorServer() as srv:
        config, env = demo_environment(srv.base_url, srv.settings)
        path = tmp_path / "connectors.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        result = Seed(srv, path, env, str(tmp_path / "metadata.db"))
        with result.store() as store:
            result.ids = await seed_store(store, load_config(str(path), env), srv)
        yield result


# --- the app -------------------------------------------------------------------------------------------
@asynccontextmanager
async def running(
    settings: ApiSettings, client: tuple[str, int] = LOOPBACK, base_url: str = BASE_URL
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as c:
            yield c


ConsoleFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_console(seed: Seed) -> ConsoleFactory:
    """``async with make_console(tokens=..., client=..., base_url=...) as c``: the app on the seeded store
    (tokens configured unless ``tokens=TokenSet()``: protected mode)."""

    def make(
        *, tokens: TokenSet | None = None, client: tuple[str, int] = LOOPBACK, base_url: str = BASE_URL
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        settings = ApiSettings(
            config_path=str(seed.config_path),
            store_url=seed.store_url,
            environ=seed.env,
            tokens=token_set() if tokens is None else tokens,
        )
        return running(settings, client, base_url)

    return make


@pytest.fixture
async def console(make_console: ConsoleFactory) -> AsyncIterator[httpx.AsyncClient]:
    """Tokens configured; the client sends the auditor's Bearer token."""
    async with make_console() as c:
        c.headers.update(bearer("auditor"))
        yield c


# --- reading pages -------------------------------------------------------------------------------------
@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


@dataclass
class _Table:
    cls: str
    rows: list[list[str]] = field(default_factory=list)
    row: list[str] | None = None
    row_has_td: bool = False
    cell: list[str] | None = None


class Page(HTMLParser):
    """The parts of a page tests look at: tables (body rows of cell texts), links, every element."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.links: list[Element] = []
        self.elements: list[Element] = []
        self._open: list[_Table] = []
        self._link: Element | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append(Element(tag, a))
        top = self._open[-1] if self._open else None
        if tag == "table":
            self._open.append(_Table(a.get("class", "")))
        elif tag == "tr" and top is not None:
            top.row, top.row_has_td = [], False
        elif tag in ("td", "th") and top is not None and top.row is not None:
            top.cell = []
            top.row_has_td |= tag == "td"
        elif tag == "a":
            self._link = Element("a", a)

    def handle_endtag(self, tag: str) -> None:
        top = self._open[-1] if self._open else None
        if tag in ("td", "th") and top is not None and top.cell is not None and top.row is not None:
            top.row.append(" ".join(" ".join(top.cell).split()))
            top.cell = None
        elif tag == "tr" and top is not None and top.row is not None:
            if top.row_has_td:  # header rows (th only) are left out
                top.rows.append(top.row)
            top.row = None
        elif tag == "table" and top is not None:
            self._open.pop()
            self.tables.append((top.cls, top.rows))
        elif tag == "a" and self._link is not None:
            self.links.append(self._link)
            self._link = None

    def handle_data(self, data: str) -> None:
        for table in self._open:
            if table.cell is not None:
                table.cell.append(data)
        if self._link is not None:
            self._link.text += data

    def rows(self, table_class: str) -> list[list[str]]:
        """The body rows of every table of that class, in page order."""
        return [row for cls, rows in self.tables if table_class in cls.split() for row in rows]

    def all_rows(self, table_class: str) -> list[list[list[str]]]:
        """Each table of that class separately."""
        return [rows for cls, rows in self.tables if table_class in cls.split()]

    def link(self, *, cls: str | None = None, text: str | None = None) -> str | None:
        for a in self.links:
            if (cls is None or cls in a.attrs.get("class", "").split()) and (text is None or text in a.text):
                return a.attrs.get("href")
        return None

    def hrefs(self) -> list[str]:
        return [a.attrs["href"] for a in self.links if "href" in a.attrs]


def page(resp: httpx.Response) -> Page:
    assert resp.headers["content-type"].startswith("text/html"), resp.headers["content-type"]
    return Page(resp.text)
