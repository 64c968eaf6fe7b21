"""ManifestTable: exclusive claims and the reservation guard, driven directly (no handler in between)."""

from __future__ import annotations

import datetime as dt

from lambdas.logic.keys import ImageRef
from tests.helpers.manifest import table

NOW = dt.datetime(2026, 11, 22, 3, tzinfo=dt.UTC)


def record(n: int) -> None:
    for i in range(n):
        ref = ImageRef("fruits-data", f"images/Test/Pear/{i}.jpg", f"{i:032x}", 10)
        assert table().record_image(ref, label="Pear", now=NOW)


def test_two_batches_claiming_the_same_candidates_get_disjoint_images(moto_aws) -> None:
    # GIVEN 30 pending images and two batches that reserved 20 and 10 of them
    record(30)
    dal = table()
    assert dal.reserve_batch(batch_id="b000001-aaaaaaaa", seq=1, expected_seq=0, size=20, reason="t", now=NOW)
    assert dal.reserve_batch(batch_id="b000002-bbbbbbbb", seq=2, expected_seq=1, size=10, reason="t", now=NOW)
    assert dal.counter() == (0, 2)

    # WHEN both try to claim the same 25 oldest pending images (the second one claims first)
    candidates = dal.pending_images(limit=25)
    second = dal.claim_images("b000002-bbbbbbbb", candidates[:10])
    first = dal.claim_images("b000001-aaaaaaaa", candidates)  # 10 already taken, 15 free, room for 20 → all 15

    # THEN no image is in both; the taken ones were dropped from the first batch's transaction
    keys = lambda images: {image["key"] for image in images}  # noqa: E731
    assert len(second) == 10 and len(first) == 15 and not keys(first) & keys(second)
    assert dal.get_batch("b000001-aaaaaaaa")["remaining"] == 5
    # AND a claim that would over-fill a batch is refused as a whole
    assert dal.claim_images("b000002-bbbbbbbb", dal.pending_images(limit=5)) == []
    rest = dal.claim_images("b000001-aaaaaaaa", dal.pending_images(limit=5))
    assert len(rest) == 5 and dal.pending_images(limit=10) == []
    assert {i["batch_id"] for i in dal.batch_images("b000001-aaaaaaaa")} == {"b000001-aaaaaaaa"}
    assert len(dal.batch_images("b000001-aaaaaaaa")) == 20 and len(dal.batch_images("b000002-bbbbbbbb")) == 10


def test_reservation_is_optimistic_on_seq_and_bounded_by_pending(moto_aws) -> None:
    # GIVEN 7 pending images
    record(7)
    dal = table()
    # WHEN reserving with a stale seq, or more than is pending THEN nothing changes
    assert not dal.reserve_batch(batch_id="b000005-cccccccc", seq=5, expected_seq=4, size=5, reason="t", now=NOW)
    assert not dal.reserve_batch(batch_id="b000001-cccccccc", seq=1, expected_seq=0, size=8, reason="t", now=NOW)
    assert dal.counter() == (7, 0) and dal.all_batches() == []
    # WHEN a reservation cannot be filled THEN releasing it gives the count back exactly
    assert dal.reserve_batch(batch_id="b000001-dddddddd", seq=1, expected_seq=0, size=7, reason="t", now=NOW)
    assert dal.counter() == (0, 1)
    assert dal.release_shortfall("b000001-dddddddd", 7, now=NOW)
    assert dal.counter() == (7, 1)
    assert dal.drop_empty_batch("b000001-dddddddd") and dal.all_batches() == []


def test_a_batch_s_images_are_marked_done_in_transactions_of_at_most_100(moto_aws, monkeypatch) -> None:
    # GIVEN 150 images claimed by one batch and 5 by another
    record(155)
    dal = table()
    assert dal.reserve_batch(batch_id="b000001-aaaaaaaa", seq=1, expected_seq=0, size=150, reason="t", now=NOW)
    assert dal.reserve_batch(batch_id="b000002-bbbbbbbb", seq=2, expected_seq=1, size=5, reason="t", now=NOW)
    pending = dal.pending_images(limit=155)
    for start in range(0, 150, 99):
        dal.claim_images("b000001-aaaaaaaa", pending[start : min(start + 99, 150)])
    dal.claim_images("b000002-bbbbbbbb", pending[150:])
    ours, theirs = dal.batch_images("b000001-aaaaaaaa"), dal.batch_images("b000002-bbbbbbbb")
    assert len(ours) == 150 and len(theirs) == 5
    transactions: list[int] = []
    transact = dal._client.transact_write_items
    monkeypatch.setattr(
        dal._client,
        "transact_write_items",
        lambda **kw: transactions.append(len(kw["TransactItems"])) or transact(**kw),
    )
    # WHEN the batch's images are marked DONE THEN two transactions (100 + 50) mark all 150
    assert dal.mark_images_done("b000001-aaaaaaaa", ours, now=NOW) == 150
    assert transactions == [100, 50]
    assert {image["status"] for image in dal.batch_images("b000001-aaaaaaaa")} == {"DONE"}
    # AND again: nothing to change (idempotent, no write)
    assert dal.mark_images_done("b000001-aaaaaaaa", dal.batch_images("b000001-aaaaaaaa"), now=NOW) == 0
    assert transactions == [100, 50]
    # AND an image of another batch in the list is left alone while the others are marked
    mixed = theirs[:1] + [dict(image, status="CLAIMED") for image in ours[:3]]
    assert dal.mark_images_done("b000001-aaaaaaaa", mixed, now=NOW) == 3
    assert {image["status"] for image in dal.batch_images("b000002-bbbbbbbb")} == {"CLAIMED"}
