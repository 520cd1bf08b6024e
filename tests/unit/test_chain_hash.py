"""The chain's pure parts: ``record_hash`` over canonical JSON, and ``verify_entries`` on built chains.

No store here (tests/store/test_chain.py runs the backends); these pin each rule of the walk so that a
flipped comparison or a changed message fails a test (``make mutation``, docs/mutation.md).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from cavra.events import canonical_json
from cavra.store.chain import (
    ALTERED,
    GENESIS_SHA256,
    MISSING,
    ChainBreak,
    ChainEntry,
    ChainHead,
    ChainIter,
    ChainReport,
    record_hash,
    verify_entries,
)


def test_record_hash_is_sha256_of_canonical_json_without_its_own_field() -> None:
    doc = {"b": 1, "a": "é", "n": None, "record_sha256": "ignored"}
    expected = hashlib.sha256('{"a":"é","b":1,"n":null}'.encode()).hexdigest()
    assert record_hash(doc) == expected
    assert record_hash({k: v for k, v in doc.items() if k != "record_sha256"}) == expected


def test_record_hash_covers_every_other_field() -> None:
    base = {"id": "d1", "sequence": 1, "previous_sha256": GENESIS_SHA256}
    assert record_hash(base) != record_hash({**base, "sequence": 2})
    assert record_hash(base) != record_hash({**base, "previous_sha256": "1" * 64})
    assert record_hash(base) == record_hash(dict(reversed(list(base.items()))))  # key order is irrelevant


def test_canonical_json_shape() -> None:
    assert canonical_json({"z": [1, {"y": "ü"}], "a": 1.5}) == '{"a":1.5,"z":[1,{"y":"ü"}]}'.encode()


def test_genesis_and_names() -> None:
    assert GENESIS_SHA256 == "0" * 64
    assert (ALTERED, MISSING) == ("altered", "missing/reordered")
    assert ChainHead() == ChainHead(count=0, last_id=None, last_sha256="0" * 64)


def _doc(i: int, prev_id: str | None, prev_sha: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"d{i}",
        "sequence": i,
        "previous_id": prev_id,
        "previous_sha256": prev_sha,
        "payload": f"p{i}",
    }
    doc["record_sha256"] = record_hash(doc)
    return doc


def _chain(n: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    prev_id, prev_sha = None, GENESIS_SHA256
    for i in range(1, n + 1):
        doc = _doc(i, prev_id, prev_sha)
        docs.append(doc)
        prev_id, prev_sha = doc["id"], doc["record_sha256"]
    return docs


def _head(docs: list[dict[str, Any]]) -> ChainHead:
    return ChainHead(len(docs), docs[-1]["id"], docs[-1]["record_sha256"]) if docs else ChainHead()


def _entries(docs: list[dict[str, Any] | None], ids: list[tuple[str, int]] | None = None) -> list[ChainEntry]:
    out = []
    for k, doc in enumerate(docs):
        did, seq = ids[k] if ids else (str(doc["id"]), int(doc["sequence"])) if doc else ("?", 0)
        out.append(ChainEntry(did, seq, doc))
    return out


def _verify(entries: list[ChainEntry], head: ChainHead) -> ChainReport:
    return verify_entries(ChainIter(iter(entries), head))


def _rehash(doc: dict[str, Any]) -> None:
    doc["record_sha256"] = record_hash(doc)


def test_an_intact_chain_verifies() -> None:
    docs = _chain(3)
    report = _verify(_entries(list(docs)), _head(docs))
    assert report == ChainReport(ok=True, count=3, first_bad=None, head_sha256=docs[-1]["record_sha256"])
    assert report.to_dict() == {
        "ok": True,
        "count": 3,
        "first_bad": None,
        "head_sha256": docs[-1]["record_sha256"],
    }


def test_an_empty_chain_verifies() -> None:
    assert _verify([], ChainHead()) == ChainReport(True, 0, None, GENESIS_SHA256)


def test_altered_content_is_named() -> None:
    docs = _chain(3)
    docs[1]["payload"] = "changed"
    report = _verify(_entries(list(docs)), _head(docs))
    assert not report.ok and report.count == 3
    assert report.first_bad == ChainBreak(
        "d2", ALTERED, 2, "d2: record_sha256 does not match the record's content"
    )
    assert report.to_dict()["first_bad"] == {
        "delivery_id": "d2",
        "reason": "altered",
        "sequence": 2,
        "detail": "d2: record_sha256 does not match the record's content",
    }


def test_a_non_string_hash_is_altered() -> None:
    docs = _chain(1)
    docs[0]["record_sha256"] = 5
    report = _verify(_entries(list(docs)), ChainHead(1, "d1", "5"))
    assert report.first_bad is not None and report.first_bad.reason == ALTERED
    assert "record_sha256 does not match" in report.first_bad.detail


def test_a_rehashed_record_is_caught_by_the_next_one() -> None:
    docs = _chain(3)
    docs[1]["payload"] = "changed"
    _rehash(docs[1])
    report = _verify(_entries(list(docs)), _head(docs))
    assert report.first_bad == ChainBreak(
        "d2", ALTERED, 2, "d2: its hash is not the previous_sha256 that d3 recorded"
    )


def test_the_first_record_must_follow_genesis() -> None:
    docs = _chain(2)
    docs[0]["previous_sha256"] = "1" * 64
    _rehash(docs[0])
    docs[1]["previous_sha256"] = docs[0]["record_sha256"]
    _rehash(docs[1])
    report = _verify(_entries(list(docs)), _head(docs))
    assert report.first_bad == ChainBreak(
        "d1", ALTERED, 1, "d1: previous_sha256 of the first record is not the genesis hash"
    )


def test_a_missing_record_is_named() -> None:
    docs = _chain(3)
    report = _verify(_entries([docs[0], docs[2]]), _head(docs))
    assert report.count == 2
    assert report.first_bad == ChainBreak("d2", MISSING, 2, "record #2 (d2) is missing before d3")


def test_reordered_records_are_caught() -> None:
    docs = _chain(3)
    report = _verify(_entries([docs[0], docs[2], docs[1]]), _head(docs))
    assert report.first_bad == ChainBreak("d2", MISSING, 2, "record #2 (d2) is missing before d3")


def test_a_missing_first_record_is_named() -> None:
    docs = _chain(2)
    report = _verify(_entries([docs[1]]), _head(docs))
    assert report.first_bad == ChainBreak("d1", MISSING, 1, "record #1 (d1) is missing before d2")


def test_a_record_linked_to_the_wrong_predecessor() -> None:
    docs = _chain(2)
    docs[1]["previous_id"] = "dX"
    _rehash(docs[1])
    report = _verify(_entries(list(docs)), _head(docs))
    assert report.first_bad == ChainBreak("d2", MISSING, 2, "d2 (#2) does not follow the record after d1")


def test_a_first_record_linked_to_something() -> None:
    docs = _chain(1)
    docs[0]["previous_id"] = "dX"
    _rehash(docs[0])
    report = _verify(_entries(list(docs)), _head(docs))
    assert report.first_bad == ChainBreak(
        "d1", MISSING, 1, "d1 (#1) does not follow the record at the start of the chain"
    )


def test_a_sequence_gap_without_a_named_predecessor() -> None:
    docs = _chain(2)
    docs[1]["sequence"] = 3
    docs[1]["previous_id"] = "d1"
    _rehash(docs[1])
    report = _verify(_entries(list(docs)), ChainHead(3, "d2", docs[1]["record_sha256"]))
    assert report.first_bad == ChainBreak("d2", MISSING, 3, "d2 (#3) does not follow the record after d1")


def test_an_unparseable_record() -> None:
    docs = _chain(2)
    entries = [ChainEntry("d1", 1, None), ChainEntry("d2", 2, docs[1])]
    report = _verify(entries, _head(docs))
    assert report.first_bad == ChainBreak(
        "d1", ALTERED, 1, "d1: the stored record is not valid JSON any more"
    )
    last_unparseable = _verify([ChainEntry("d1", 1, None)], ChainHead(1, "d1", ""))
    assert last_unparseable.head_sha256 == ""


def test_stored_id_or_sequence_must_match_the_document() -> None:
    docs = _chain(1)
    for did, seq in (("other", 1), ("d1", 2)):
        report = _verify(
            [ChainEntry(did, seq, copy.deepcopy(docs[0]))], ChainHead(seq, did, docs[0]["record_sha256"])
        )
        assert report.first_bad is not None
        assert report.first_bad.reason == ALTERED
        assert report.first_bad.detail == f"{did}: the stored id or sequence differs from the hashed record"


def test_columns_must_equal_what_the_document_implies() -> None:
    doc = _chain(1)[0]
    head = _head([doc])
    good = ChainEntry("d1", 1, doc, columns={"provider": "x"}, expected_columns={"provider": "x"})
    assert _verify([good], head).ok
    bad = ChainEntry("d1", 1, doc, columns={"provider": "x"}, expected_columns={"provider": "y"})
    assert _verify([bad], head).first_bad == ChainBreak(
        "d1", ALTERED, 1, "d1: the indexed column provider differs from the hashed record"
    )
    unexpected = ChainEntry("d1", 1, doc, columns={"provider": "x"})
    assert not _verify([unexpected], head).ok


def test_index_rows_must_equal_what_the_document_implies() -> None:
    doc = _chain(1)[0]
    head = _head([doc])
    rows = [{"provider": "splunk"}]
    assert _verify([ChainEntry("d1", 1, doc, index=rows, expected_index=list(rows))], head).ok
    assert _verify([ChainEntry("d1", 1, doc, expected_index=rows)], head).ok  # JSON backend: nothing kept
    bad = _verify([ChainEntry("d1", 1, doc, index=rows, expected_index=[])], head)
    assert bad.first_bad == ChainBreak(
        "d1", ALTERED, 1, "d1: the provider index rows differ from the hashed record"
    )


def test_a_truncated_tail_is_caught_by_the_head() -> None:
    docs = _chain(3)
    report = _verify(_entries(docs[:2]), _head(docs))
    assert report.first_bad == ChainBreak(
        "d3", MISSING, 3, "the chain head records 3 deliveries ending at d3, but the stored chain ends at #2"
    )
    unnamed = _verify(_entries(docs[:2]), ChainHead(3, None, "x"))
    assert unnamed.first_bad is not None and unnamed.first_bad.delivery_id == "?"
    assert unnamed.first_bad.detail.startswith("the chain head records 3 deliveries ending at ?")


def test_a_chain_past_its_head() -> None:
    docs = _chain(2)
    report = _verify(_entries(list(docs)), _head(docs[:1]))
    assert report.first_bad == ChainBreak("d2", ALTERED, 2, "the stored chain runs past its head (#1)")
    from_nothing = _verify(_entries(list(docs)), ChainHead())
    assert from_nothing.first_bad == ChainBreak("d2", ALTERED, 2, "the stored chain runs past its head (#0)")


def test_the_last_record_must_match_the_head() -> None:
    docs = _chain(2)
    for head in (ChainHead(2, "d2", "f" * 64), ChainHead(2, "dX", docs[1]["record_sha256"])):
        report = _verify(_entries(list(docs)), head)
        assert report.first_bad == ChainBreak(
            "d2", ALTERED, 2, "d2: the last record differs from the chain head"
        )


def test_only_the_first_break_is_reported() -> None:
    docs = _chain(3)
    docs[0]["payload"] = "x"
    docs[2]["payload"] = "y"
    report = _verify(_entries(list(docs)), _head(docs))
    assert report.first_bad is not None and report.first_bad.delivery_id == "d1"
    assert report.count == 3
