"""The console shows both sides of a group: the member's page links the group's record, the group's page
lists its members (each a link to that event's records), and the history filters group deliveries by
their metadata kind (``group-delivery``)."""

from __future__ import annotations

import json
from pathlib import Path

from cavra.api.settings import ApiSettings
from cavra.emulators.server import EmulatorServer, demo_environment
from cavra.governance import service as governance
from cavra.store import open_store

from ..console.conftest import bearer, page, running, token_set
from .conftest import GROUPED, Clock, documents, flush, grouped_config, rollback


async def test_member_and_group_pages_link_each_other(
    tmp_path: Path, emulators: EmulatorServer, clock: Clock
) -> None:
    config = grouped_config(emulators, [{**GROUPED, "to": ["slack"]}])
    url = str(tmp_path / "metadata.db")
    with open_store(url) as store:
        await governance.publish_events(store, config, [rollback(1), rollback(2)], now=clock())
        clock.set(31)
        await flush(store, config, clock)
        docs = documents(store)
    group = next(d for d in docs if d["metadata_kind"] == "group-delivery")
    member = next(d for d in docs if d["metadata_kind"] == "event-delivery")
    data, env = demo_environment(emulators.base_url, emulators.settings)
    path = tmp_path / "connectors.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    settings = ApiSettings(config_path=str(path), store_url=url, environ=env, tokens=token_set())
    async with running(settings) as c:
        c.headers.update(bearer("auditor"))
        member_page = page(await c.get(f"/console/deliveries/{member['id']}"))
        assert member_page.link(cls="group-delivery") == f"/console/deliveries/{group['id']}"
        group_page = page(await c.get(f"/console/deliveries/{group['id']}"))
        links = [a.attrs["href"] for a in group_page.links if "group-member" in a.attrs.get("class", "")]
        assert links == [
            "/console/deliveries?event_id=evt-rb-1&metadata_kind=event-delivery",
            "/console/deliveries?event_id=evt-rb-2&metadata_kind=event-delivery",
        ]
        listed = await c.get("/console/deliveries?metadata_kind=group-delivery")
        assert listed.status_code == 200 and group["id"] in listed.text and member["id"] not in listed.text
