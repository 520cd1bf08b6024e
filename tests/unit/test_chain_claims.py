"""Signed head claims checked on a chain walk (``verify_entries(..., claims)``), pinned message by message.

A claim is what a signed checkpoint says: record #count is ``last_id`` with hash ``head_sha256``. The
store tests (tests/store/test_checkpoints.py) tamper real stores; these pin each rule of the pure check.
"""

from __future__ import annotations

import copy
from typing import Any

from cavra.store.chain import (
    MISSING,
    REWRITTEN,
    ChainBreak,
    ChainIter,
    ClaimResult,
    HeadClaim,
    record_hash,
    verify_entries,
)
from tests.unit.test_chain_hash import _chain, _entries, _head


def _claim(docs: list[dict[str, Any]], count: int, label: str = "cp") -> HeadClaim:
    doc = docs[count - 1]
    return HeadClaim(count, doc["id"], doc["record_sha256"], label)


def _walk(
    docs: list[dict[str, Any]], claims: list[HeadClaim], head_docs: list[dict[str, Any]] | None = None
) -> Any:
    head = _head(head_docs if head_docs is not None else docs)
    return verify_entries(ChainIter(iter(_entries(list(docs))), head), claims)


def test_claims_that_hold() -> None:
    docs = _chain(4)
    report = _walk(docs, [_claim(docs, 2, "a"), _claim(docs, 4, "b")])
    assert report.ok and report.first_bad is None
    assert report.claims == (ClaimResult("a", 2, True, "holds"), ClaimResult("b", 4, True, "holds"))
    assert report.claims[0].to_dict() == {"checkpoint": "a", "count": 2, "ok": True, "detail": "holds"}


def test_a_claim_of_the_empty_chain_holds_whatever_was_appended() -> None:
    docs = _chain(2)
    empty = HeadClaim(0, None, "0" * 64, "empty")
    report = _walk(docs, [empty])
    assert report.ok
    assert report.claims == (ClaimResult("empty", 0, True, "the empty chain"),)


def test_a_rewritten_record_below_a_single_claim_is_named_as_a_range() -> None:
    docs = _chain(6)
    claim = _claim(docs, 6, "the checkpoint in cp.json")
    forged = copy.deepcopy(docs)
    forged[3]["payload"] = "rewritten"  # record #4, then every hash after it recomputed to hide it
    prev_sha = forged[2]["record_sha256"]
    for doc in forged[3:]:
        doc["previous_sha256"] = prev_sha
        doc["record_sha256"] = record_hash(doc)
        prev_sha = doc["record_sha256"]
    report = _walk(forged, [claim])
    assert not report.ok
    detail = (
        "record #6 (d6) is not the record the checkpoint in cp.json signed "
        f"(d6, sha256 {docs[5]['record_sha256'][:16]}…): a record in #1…#6 was rewritten after it was "
        "signed (its hashes and the chain head recomputed to hide it)"
    )
    assert report.first_bad == ChainBreak("d6", REWRITTEN, 1, detail)
    assert report.claims == (ClaimResult("the checkpoint in cp.json", 6, False, detail),)


def test_an_earlier_claim_that_holds_narrows_the_range() -> None:
    docs = _chain(6)
    claims = [_claim(docs, 3, "old"), _claim(docs, 6, "new")]
    forged = copy.deepcopy(docs)
    forged[4]["payload"] = "rewritten"
    prev_sha = forged[3]["record_sha256"]
    for doc in forged[4:]:
        doc["previous_sha256"] = prev_sha
        doc["record_sha256"] = record_hash(doc)
        prev_sha = doc["record_sha256"]
    report = _walk(forged, claims)
    assert report.first_bad is not None
    assert report.first_bad.reason == REWRITTEN and report.first_bad.sequence == 4
    assert "a record in #4…#6 was rewritten" in report.first_bad.detail
    assert [c.ok for c in report.claims] == [True, False]


def test_a_claim_right_after_one_that_held_names_one_record() -> None:
    docs = _chain(3)
    claims = [_claim(docs, 2, "two"), HeadClaim(3, "d3", "f" * 64, "three")]
    report = _walk(docs, claims)
    assert report.first_bad is not None and report.first_bad.sequence == 3
    assert "a record in #3 was rewritten" in report.first_bad.detail


def test_two_claims_at_one_index_are_judged_apart() -> None:
    docs = _chain(2)
    good, bad = _claim(docs, 2, "good"), HeadClaim(2, "d2", "e" * 64, "bad")
    report = _walk(docs, [bad, good])
    assert [(c.label, c.ok) for c in report.claims] == [("bad", False), ("good", True)]
    assert report.first_bad is not None and "a record in #1…#2" in report.first_bad.detail


def test_a_claim_past_the_stored_chain_says_records_were_removed() -> None:
    docs = _chain(5)
    claim = _claim(docs, 5, "witness line 3")
    kept = docs[:3]  # the tail was deleted and the head rewritten to match
    report = _walk(kept, [claim], head_docs=kept)
    assert not report.ok
    detail = (
        "witness line 3 covers 5 records ending at d5, but record #4 is missing from the stored chain "
        "(it ends at #3): records were removed"
    )
    assert report.first_bad == ChainBreak("d5", MISSING, 4, detail)
    assert report.claims == (ClaimResult("witness line 3", 5, False, detail),)


def test_claims_are_reported_in_the_order_given() -> None:
    docs = _chain(4)
    claims = [_claim(docs, 4, "d"), _claim(docs, 1, "a"), HeadClaim(0, None, "0" * 64, "z")]
    report = _walk(docs, claims)
    assert [c.label for c in report.claims] == ["d", "a", "z"]
    assert all(c.ok for c in report.claims)
