"""Many ingest Lambdas at once: exact batches, exclusive claims, one job run at a time, in order."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fruits.local.lambda_runtime import LocalLambdaContext
from lambdas.config import get_settings
from lambdas.dal import BatchStatus
from lambdas.handlers import ingest, job_state
from tests.helpers.aws_fixtures import Obj, job_state_event, sqs_event
from tests.helpers.manifest import JobRunWatch, read_manifest, table

N_IMAGES, THREADS, SQS_BATCH = 1_000, 8, 10


def test_eight_threads_deliver_1000_events_across_threshold_100(moto_aws, events_dir: Path) -> None:
    # GIVEN 1,000 image notifications (ETags as S3 would send them), threshold 100, a watch on StartJobRun
    objects = [Obj(f"images/Training/Class {i % 24}/{i}_100.jpg", f"{i:032x}", 4000 + i) for i in range(N_IMAGES)]
    events = [sqs_event(events_dir, objects[i : i + SQS_BATCH]) for i in range(0, N_IMAGES, SQS_BATCH)]
    watch = JobRunWatch().install()
    context = LocalLambdaContext(function_name="fruits-ingest")

    # WHEN 8 threads deliver them (100 SQS batches of 10) to the ingest handler at once
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(lambda event: ingest.handler(event, context), events))
    ingest_seconds = time.perf_counter() - started
    ingest_calls = Counter(op for _, op, _ in moto_aws.calls)

    # THEN no message failed, and there are exactly 10 sealed batches of 100 images
    assert all(response == {"batchItemFailures": []} for response in responses)
    batches = table().all_batches()
    assert len(batches) == 10
    assert [b["image_count"] for b in batches] == [100] * 10
    assert [b["seq"] for b in batches] == list(range(1, 11))  # ids sortable in sealing order, no gaps
    assert table().counter() == (0, 10)
    # AND every image is in exactly one batch: table items and the S3 manifests agree
    images = [image for batch in batches for image in table().batch_images(batch["batch_id"])]
    assert len(images) == N_IMAGES and all(image["status"] == "CLAIMED" for image in images)
    assert table().pending_images(limit=10) == []
    manifest_keys = [record["key"] for batch in batches for record in read_manifest(batch)]
    assert len(manifest_keys) == N_IMAGES == len(set(manifest_keys))
    assert sorted(manifest_keys) == sorted(obj.key for obj in objects)
    by_batch = {b["batch_id"]: {r["key"] for r in read_manifest(b)} for b in batches}
    assert all(image["key"] in by_batch[image["batch_id"]] for image in images)
    # AND only the first batch has a job run so far (the slot is held until its state change arrives)
    assert len(watch.requests) == 1 and watch.max_active == 1
    assert [b["status"] for b in batches] == ["RUNNING"] + ["SEALED"] * 9

    # WHEN SUCCESS events arrive, each delivered twice at once (EventBridge is at-least-once)
    app_id = get_settings().emr_application_id
    for _ in range(12):
        running = table().batches_by_status(BatchStatus.RUNNING)
        if not running:
            break
        assert len(running) == 1
        job_run_id = running[0]["job_run_id"]
        watch.finished(job_run_id)
        event = job_state_event(events_dir, "SUCCESS", job_run_id, app_id)
        with ThreadPoolExecutor(2) as pool:
            actions = sorted(r["action"] for r in pool.map(lambda e: job_state.handler(e, context), [event, event]))
        assert actions == ["stale", "succeeded"]

    # THEN 10 job runs were started, in batch order, with distinct client tokens, never two at once
    batches = table().all_batches()
    assert len(watch.requests) == 10
    assert len(set(watch.client_tokens)) == 10
    assert watch.client_tokens == [f"{b['batch_id']}-a1" for b in batches]
    assert watch.overlaps == [] and watch.max_active == 1
    assert all(b["status"] == "SUCCEEDED" for b in batches)
    images = [image for batch in batches for image in table().batch_images(batch["batch_id"])]
    assert len(images) == N_IMAGES and all(image["status"] == "DONE" for image in images)
    total_calls = Counter(op for _, op, _ in moto_aws.calls)
    print(f"\n{N_IMAGES} images, 8 threads: ingest {ingest_seconds:.1f}s; calls while ingesting {dict(ingest_calls)}")
    print(f"all calls incl. 10 job runs: {sum(total_calls.values())} = {dict(total_calls)}")
