"""Resumable backfill: paged listing with a cursor in the manifest table, resumed after an interruption."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from lambdas.config import get_settings
from lambdas.dal.cursor_items import cursor_key
from lambdas.handlers import reconcile
from lambdas.pipeline import get_pipeline
from tests.helpers.aws_fixtures import BUCKET, upload
from tests.helpers.manifest import scan, table


class SimulatedCrash(Exception):
    """Stands for the Lambda dying between recording a page and saving the cursor."""


@dataclass
class ShrinkingContext:
    """A Lambda context whose remaining time drops by ``step_ms`` at each read (one read per page)."""

    remaining_ms: int
    step_ms: int
    function_name: str = "reconcile"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-3:123456789012:function:reconcile"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        left = self.remaining_ms
        self.remaining_ms -= self.step_ms
        return left


def put_many(keys: list[str]) -> None:
    """Create objects straight in moto's S3 backend (the S3 API would take minutes for 20,000)."""
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["aws"]
    for key in keys:
        backend.put_object(BUCKET, key, f"bytes of {key}".encode(), disable_notification=True)


def image_uris() -> Counter[str]:
    return Counter(f"s3://{item['bucket']}/{item['key']}" for item in scan("image"))


@pytest.fixture
def no_sealing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold no test reaches: reconcile's own sealing is not what these tests are about."""
    monkeypatch.setenv("BATCH_THRESHOLD", "1000000")
    monkeypatch.setenv("BATCH_MAX_IMAGES", "1000000")
    get_settings.cache_clear()


def test_20000_objects_interrupted_after_a_third_then_resumed_are_each_recorded_once(
    moto_aws: Any, no_sealing: None
) -> None:
    # GIVEN 20,000 images in the bucket (and 50 non-images) that no event ever recorded
    keys = [f"images/Apple/{i:05d}.jpg" for i in range(20_000)]
    put_many(keys + [f"images/notes/{i}.txt" for i in range(50)])

    # WHEN reconcile runs with a Lambda budget that runs out after 7 of 21 pages (1,000 keys each)
    first = reconcile.handler({}, ShrinkingContext(remaining_ms=600_000, step_ms=80_000))

    # THEN it stopped after about a third, with the cursor stored after the last recorded page
    assert first["backfill_complete"] is False
    assert first["listed"] == 7_000 and first["missing_recorded"] == 7_000
    cursor = table().cursor("images/")
    assert cursor is not None and cursor.pages == 7 and cursor.listed == 7_000 and cursor.recorded == 7_000
    assert cursor.start_after == keys[6_999] and cursor.continuation_token

    # WHEN the next scheduled reconcile runs with plenty of time
    second = reconcile.handler({}, ShrinkingContext(remaining_ms=600_000, step_ms=0))

    # THEN it resumed where the first stopped: every object recorded exactly once, the cursor cleared
    assert second["backfill_complete"] is True
    assert second["listed"] == 13_050 and second["missing_recorded"] == 13_000
    uris = image_uris()
    assert len(uris) == 20_000 and max(uris.values()) == 1
    assert set(uris) == {f"s3://{BUCKET}/{key}" for key in keys}
    assert table().counter()[0] == 20_000  # the exact pending count agrees
    assert table().cursor("images/") is None


def test_crash_between_page_write_and_cursor_save_records_nothing_twice(
    moto_aws: Any, no_sealing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 250 images and a backfill that dies right after recording its second page (before saving the cursor)
    keys = [f"images/Pear/{i:04d}.jpg" for i in range(250)]
    upload(keys)
    pipeline = get_pipeline()
    saves = []
    original_save = pipeline.table.save_cursor

    def save_then_crash(cursor: Any) -> None:
        if saves:
            raise SimulatedCrash("Lambda died before the cursor was saved")
        saves.append(cursor)
        original_save(cursor)

    monkeypatch.setattr(pipeline.table, "save_cursor", save_then_crash)
    with pytest.raises(SimulatedCrash):
        pipeline.backfill(page_size=100)
    assert len(image_uris()) == 200 and table().cursor("images/").listed == 100  # type: ignore[union-attr]

    # WHEN the next run resumes from the cursor of page 1
    monkeypatch.setattr(pipeline.table, "save_cursor", original_save)
    outcome = pipeline.backfill(page_size=100)

    # THEN page 2 is listed again but nothing is recorded twice, page 3 is recorded, the pass is complete
    assert outcome.resumed and outcome.complete
    assert (outcome.listed, outcome.recorded) == (150, 50)
    uris = image_uris()
    assert len(uris) == 250 and max(uris.values()) == 1
    assert table().counter()[0] == 250


def test_rerecording_a_known_object_is_a_no_op_even_without_the_existence_check(moto_aws: Any) -> None:
    # GIVEN an image already recorded
    upload(["images/Kiwi/1.jpg"])
    pipeline = get_pipeline()
    assert pipeline.backfill().recorded == 1

    # WHEN a second pass runs and the BatchGetItem pre-check sees nothing (a stale read)
    pipeline.table.existing_images = lambda keys: set()  # type: ignore[method-assign]
    outcome = pipeline.backfill()

    # THEN the conditional Put refuses the duplicate: nothing recorded, pending count unchanged
    assert outcome.complete and (outcome.listed, outcome.recorded) == (1, 0)
    assert len(image_uris()) == 1 and table().counter()[0] == 1


def test_a_prefix_backfill_touches_only_that_prefix(moto_aws: Any, no_sealing: None, api_calls: Any) -> None:
    # GIVEN images under two class folders
    upload([f"images/Apple/{i}.jpg" for i in range(30)] + [f"images/Banana/{i}.jpg" for i in range(20)])

    # WHEN a backfill of images/Banana/ runs in pages of 7
    outcome = get_pipeline().backfill("images/Banana/", page_size=7)

    # THEN only Banana images are listed and recorded, with a cursor item of its own removed at the end
    assert outcome.complete and (outcome.listed, outcome.recorded, outcome.pages) == (20, 20, 3)
    assert {uri.split("/")[4] for uri in image_uris()} == {"Banana"}
    assert {call["Prefix"] for call in api_calls.named("ListObjectsV2")} == {"images/Banana/"}
    assert table()._get(cursor_key("images/Banana/")) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "manifests/"}, "outside the images prefix"),
        ({"page_size": 0}, "page size must be 1..1000"),
        ({"max_pages": 0}, "max pages must be"),
    ],
)
def test_bad_arguments_are_refused_before_any_listing(moto_aws: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_pipeline().backfill(**kwargs)
    assert moto_aws.named("ListObjectsV2") == []
