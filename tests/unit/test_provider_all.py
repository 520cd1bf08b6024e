"""``--provider all`` picks the destinations that take the event, judged by provider, loaded or not."""

from __future__ import annotations

import json
from pathlib import Path

from cavra.config import load_config
from cavra.service import all_that_take

EVIDENCE = {"event_type": "cavra.evidence_bundle", "event_id": "evt_1"}
PUBLICATION = {"event_type": "cavra.endpoint_management.publication", "event_id": "evt_2"}


def config(tmp_path: Path) -> str:
    path = tmp_path / "connectors.json"
    entries = {
        "webhook": {"url_env": "HOOK"},
        "jamf": {"url_env": "JAMF_URL", "client_id_env": "UNSET_ID", "client_secret_env": "UNSET_SECRET"},
    }
    path.write_text(json.dumps({"connectors": entries}))
    return str(path)


def test_an_endpoint_destination_that_did_not_load_is_skipped_for_an_evidence_event(tmp_path: Path) -> None:
    loaded = load_config(config(tmp_path), environ={"HOOK": "https://hooks.example/x"})
    assert "jamf" in loaded.errors  # its secrets are not set
    chosen, skipped = all_that_take(loaded, [EVIDENCE])
    assert chosen == ["webhook"]
    assert set(skipped) == {"jamf"} and "take endpoint exports" in skipped["jamf"]


def test_an_endpoint_publication_still_reaches_the_endpoint_destination(tmp_path: Path) -> None:
    loaded = load_config(config(tmp_path), environ={"HOOK": "https://hooks.example/x"})
    chosen, skipped = all_that_take(loaded, [PUBLICATION])
    assert chosen == ["webhook", "jamf"] and skipped == {}
