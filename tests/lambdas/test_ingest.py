"""ingest handler: S3 notifications via SQS → manifest items, exact pending count, threshold seals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas import aws
from lambdas.config import get_settings
from lambdas.dal import ManifestTable
from lambdas.handlers import ingest
from tests.helpers.aws_fixtures import BUCKET, TABLE, Obj, load_event, sqs_event, upload

CTX = LocalLambdaContext(function_name="fruits-ingest")


def table() -> ManifestTable:
    return ManifestTable(TABLE, aws.client("dynamodb"))


def all_images() -> list[dict]:
    from lambdas.dal.codec import from_item

    items = []
    for page in aws.client("dynamodb").get_paginator("scan").paginate(TableName=TABLE):
        items += [from_item(raw) for raw in page["Items"]]
    return [item for item in items if item.get("type") == "image"]


def test_keys_with_spaces_plus_unicode_and_percent_are_recorded_under_real_names(moto_aws, events_dir: Path) -> None:
    # GIVEN objects whose keys need URL-encoding in S3 notifications (space, '+', unicode, '%', '&', '=')
    keys = [
        "images/Training/Apple Braeburn/0_100.jpg",
        "images/Training/Apple+Granny Smith/1+1=2.jpg",
        "images/Test/Pomme dorée/été 2026 ☀.JPEG",
        "images/Test/Kiwi/100%25 kiwi & co.png",
        "images/Test/Fraise/%E2%9C%93 déjà-encodé.jpg",
    ]
    objects = upload(keys)
    event = sqs_event(events_dir, objects)
    assert "Apple+Braeburn" in event["Records"][0]["body"]  # the notification really is encoded

    # WHEN the ingest Lambda receives them
    response = ingest.handler(event, CTX)

    # THEN every image is recorded under its real key, with the folder directly containing it as label
    assert response == {"batchItemFailures": []}
    images = {item["key"]: item for item in all_images()}
    assert sorted(images) == sorted(keys)
    assert images["images/Test/Pomme dorée/été 2026 ☀.JPEG"]["label"] == "Pomme dorée"
    assert images["images/Training/Apple+Granny Smith/1+1=2.jpg"]["label"] == "Apple+Granny Smith"
    assert all(item["status"] == "PENDING" and item["bucket"] == BUCKET for item in images.values())
    assert table().counter() == (5, 0)


def test_each_event_delivered_three_times_gives_one_item_and_one_count(moto_aws, events_dir: Path) -> None:
    # GIVEN 40 uploaded images whose notifications are each delivered 3 times, shuffled, in SQS batches of 10
    objects = upload([f"images/Training/Banana/{i}_100.jpg" for i in range(40)])
    deliveries = objects * 3
    random.Random(4).shuffle(deliveries)

    # WHEN the ingest Lambda processes every delivery
    for start in range(0, len(deliveries), 10):
        assert ingest.handler(sqs_event(events_dir, deliveries[start : start + 10]), CTX) == {"batchItemFailures": []}

    # THEN there is one manifest item per image and the pending count is exactly 40
    images = all_images()
    assert len(images) == 40
    assert len({(i["key"], i["etag"]) for i in images}) == 40
    assert table().counter() == (40, 0)
    # and a re-upload with new bytes (new ETag) is a new image
    [changed] = upload(["images/Training/Banana/0_100.jpg"], body=b"new bytes")
    ingest.handler(sqs_event(events_dir, [changed]), CTX)
    assert table().counter() == (41, 0)


def test_test_event_and_non_images_are_skipped_with_reason_and_metric(
    moto_aws,
    events_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN metrics enabled, the s3:TestEvent S3 sends on configuration, and keys that are not images
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    objects = [
        Obj("logs/job.txt", "e1", 10),
        Obj("images/Training/Banana/readme.txt", "e2", 10),
        Obj("images/Training/Banana/", "e3", 0),
    ]
    event = sqs_event(events_dir, objects)
    event["Records"] += load_event(events_dir, "sqs_s3_test_event.json")["Records"]

    # WHEN the ingest Lambda receives them
    response = ingest.handler(event, CTX)

    # THEN nothing is recorded, nothing fails, and each skip is logged with its reason and counted
    assert response == {"batchItemFailures": []}
    assert all_images() == []
    reasons = sorted(r.reason for r in caplog.records if r.getMessage() == "skipped object")  # type: ignore[attr-defined]
    assert reasons == ["folder_marker", "not_an_image_suffix", "outside_prefix"]
    assert any(r.getMessage() == "skipped s3:TestEvent" for r in caplog.records)
    out = capsys.readouterr().out
    [emf] = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert sum(emf["ObjectsSkipped"]) == 3 and emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Fruits"


def test_a_bad_message_is_reported_alone_for_retry(moto_aws, events_dir: Path) -> None:
    # GIVEN a batch with one good notification and one body that is not JSON
    event = sqs_event(events_dir, upload(["images/Training/Kiwi/1.jpg"]))
    bad = json.loads(json.dumps(event["Records"][0]))
    bad["messageId"] = "bad-message"
    bad["body"] = "{not json"
    event["Records"].append(bad)

    # WHEN processed
    response = ingest.handler(event, CTX)

    # THEN only the bad message is returned to SQS (it will reach the DLQ), the good image is recorded
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-message"}]}
    assert [item["key"] for item in all_images()] == ["images/Training/Kiwi/1.jpg"]


def test_ingest_metrics_count_recorded_duplicates_sealed_and_started(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN metrics enabled and a threshold of 5
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("BATCH_THRESHOLD", "5")
    get_settings.cache_clear()
    objects = upload([f"images/Training/Pear/{i}.jpg" for i in range(7)])
    # WHEN 7 notifications arrive, then the first 3 are delivered again
    ingest.handler(sqs_event(events_dir, objects), CTX)
    ingest.handler(sqs_event(events_dir, objects[:3]), CTX)
    # THEN the metrics say 7 recorded, 3 duplicates, 1 batch sealed and 1 job run started
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    totals = {
        name: sum(sum(e.get(name, [])) for e in emf)
        for name in ("ImagesRecorded", "DuplicatesIgnored", "BatchesSealed", "JobRunsStarted")
    }
    assert totals == {"ImagesRecorded": 7, "DuplicatesIgnored": 3, "BatchesSealed": 1, "JobRunsStarted": 1}


def test_an_image_with_no_class_folder_is_recorded_without_label(moto_aws, events_dir: Path, monkeypatch) -> None:
    # GIVEN a photo uploaded directly under the images prefix (no class folder) and a threshold of 2
    monkeypatch.setenv("BATCH_THRESHOLD", "2")
    get_settings.cache_clear()
    objects = upload(["images/loose photo.jpg", "images/Training/Kiwi/1.jpg"])
    # WHEN both notifications arrive
    assert ingest.handler(sqs_event(events_dir, objects), CTX) == {"batchItemFailures": []}
    # THEN both are recorded (nothing is lost), the loose one with no label, and the batch manifest says label null
    items = {item["key"]: item for item in all_images()}
    assert set(items) == {"images/loose photo.jpg", "images/Training/Kiwi/1.jpg"}
    assert "label" not in items["images/loose photo.jpg"] and items["images/Training/Kiwi/1.jpg"]["label"] == "Kiwi"
    [batch] = ManifestTable(TABLE, aws.client("dynamodb")).all_batches()
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=batch["manifest_uri"].split("/", 3)[3])["Body"].read()
    labels = {json.loads(line)["key"]: json.loads(line)["label"] for line in body.decode().splitlines()}
    assert labels == {"images/loose photo.jpg": None, "images/Training/Kiwi/1.jpg": "Kiwi"}


def test_image_suffixes_in_any_case_are_recorded_at_once_and_other_suffixes_skipped(
    moto_aws, events_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN uploads whose suffixes mix cases (the bucket notifies for every object under images/)
    keys = ["images/Training/Kiwi/a.Jpg", "images/Training/Kiwi/b.JPEG", "images/Training/Kiwi/c.PnG"]
    objects = upload([*keys, "images/Training/Kiwi/notes.Txt"])

    # WHEN the ingest Lambda receives their notifications
    response = ingest.handler(sqs_event(events_dir, objects), CTX)

    # THEN the three images are recorded as pending at once and the text file is skipped with its reason
    assert response == {"batchItemFailures": []}
    assert sorted(item["key"] for item in all_images()) == keys
    assert table().counter() == (3, 0)
    reasons = [r.reason for r in caplog.records if r.getMessage() == "skipped object"]  # type: ignore[attr-defined]
    assert reasons == ["not_an_image_suffix"]


def test_warm_ingest_invocations_share_one_pipeline_and_read_the_oldest_pending_image_once(
    moto_aws, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN threshold 100, max wait 900 s, and a count of the GSI queries for the oldest pending image
    from lambdas.pipeline import get_pipeline

    monkeypatch.setenv("BATCH_THRESHOLD", "100")
    monkeypatch.setenv("BATCH_MAX_WAIT_SECONDS", "900")
    get_settings.cache_clear()
    queries: list[int] = []

    def on_query(params: dict, **_: object) -> None:
        if params.get("Limit") == 1 and "IMAGES#PENDING" in json.dumps(params.get("ExpressionAttributeValues")):
            queries.append(1)

    aws.client("dynamodb").meta.events.register("provide-client-params.dynamodb.Query", on_query)
    objects = upload([f"images/Training/Kiwi/{i}.jpg" for i in range(25)])
    # WHEN the ingest Lambda receives them in three invocations of one warm container (10, 10, 5 records)
    pipelines = set()
    for start in (0, 10, 20):
        assert ingest.handler(sqs_event(events_dir, objects[start : start + 10]), CTX) == {"batchItemFailures": []}
        pipelines.add(id(get_pipeline()))
    # THEN every image is recorded, nothing is sealed, one pipeline served them all, and the oldest pending image
    # was read once (the first ingest), not once per record
    assert table().counter() == (25, 0) and len(pipelines) == 1
    assert len(queries) == 1
    # AND new clients (another endpoint) give a new pipeline
    before = get_pipeline()
    aws.reset_clients()
    assert get_pipeline() is not before


def test_logs_carry_a_stable_hash_of_the_key_never_the_key(
    moto_aws, events_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN keys holding a person's name: a photo and a text file (skipped)
    from lambdas.handlers.observability import key_hash

    keys = ["images/Training/Kiwi/jane_doe_garden.jpg", "images/Training/Kiwi/jane_doe_notes.txt"]
    objects = upload(keys)
    # WHEN the ingest Lambda records them, then receives the photo's notification again
    assert ingest.handler(sqs_event(events_dir, objects), CTX) == {"batchItemFailures": []}
    assert ingest.handler(sqs_event(events_dir, objects[:1]), CTX) == {"batchItemFailures": []}
    # THEN no log record names the key (message or any field), and each record about an object carries the key's
    # hash, the same on every delivery
    records = [r for r in caplog.records if r.name == "fruits-ingestion"]
    assert records and not [r for r in records if "jane_doe" in json.dumps(vars(r), default=str)]
    hashes = {r.getMessage(): r.uri_sha256 for r in records if hasattr(r, "uri_sha256")}
    photo, text = (key_hash(f"s3://{BUCKET}/{key}") for key in keys)
    assert hashes == {"image recorded": photo, "skipped object": text, "duplicate delivery ignored": photo}
    assert key_hash(f"s3://{BUCKET}/{keys[0]}") == photo and len(photo) == 16 and photo != text
