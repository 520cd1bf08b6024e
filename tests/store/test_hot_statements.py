"""The worker path's driver-level statements: one encoding gives the hash and the stored text."""

from __future__ import annotations

from typing import Any

import pytest

from cavra.events import canonical_json
from cavra.store.chain import record_hash
from cavra.store.sqlappend import hashed_and_stored

DOCS: list[dict[str, Any]] = [
    {"a": 1, "previous_sha256": "0" * 64, "z": [1, {"previous_sha256": "x"}]},
    {"previous_sha256": "ab" * 32},
    {"previous_sha256": "ab" * 32, "previous_sha2": 1, "previous_sha256x": 2, "pr": None},
    {"b": "héllo ✓ \u2028", "c": 1.5, "a": {"y": 2, "x": [True, None]}},
    {"only": "no previous hash"},
    {},
]


@pytest.mark.parametrize("doc", DOCS)
def test_hash_and_stored_text_are_those_of_the_plain_encodings(doc: dict[str, Any]) -> None:
    sha, stored = hashed_and_stored(doc)
    assert sha == record_hash(doc)
    assert stored == canonical_json({k: v for k, v in doc.items() if k != "previous_sha256"}).decode()
