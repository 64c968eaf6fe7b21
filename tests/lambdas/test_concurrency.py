"""Many ingest Lambdas at once: exact batches, exclusive claims, one job run at a time, in order (a job run takes
every sealed batch waiting: issue 19)."""

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
        [job_run_id] = {batch["job_run_id"] for batch in running}  # one job run at a time
        watch.finished(job_run_id)
        event = job_state_event(events_dir, "SUCCESS", job_run_id, app_id)
        with ThreadPoolExecutor(2) as pool:
            actions = sorted(r["action"] for r in pool.map(lambda e: job_state.handler(e, context), [event, event]))
        assert actions == ["stale", "succeeded"]

    # THEN 2 job runs were started, never two at once: the first batch alone (the only one sealed when the slot
    # was free), then the 9 batches sealed while it ran, in one job run, in batch order, led by the second batch
    batches = table().all_batches()
    assert len(watch.requests) == 2
    assert watch.client_tokens == [f"{batches[0]['batch_id']}-a1", f"{batches[1]['batch_id']}-a1"]
    args = watch.requests[1]["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--batch-id"] == [b["batch_id"] for b in batches[1:]]
    assert watch.overlaps == [] and watch.max_active == 1
    assert all(b["status"] == "SUCCEEDED" for b in batches)
    images = [image for batch in batches for image in table().batch_images(batch["batch_id"])]
    assert len(images) == N_IMAGES and all(image["status"] == "DONE" for image in images)
    total_calls = Counter(op for _, op, _ in moto_aws.calls)
    print(f"\n{N_IMAGES} images, 8 threads: ingest {ingest_seconds:.1f}s; calls while ingesting {dict(ingest_calls)}")
    print(f"all calls incl. 2 job runs (10 batches): {sum(total_calls.values())} = {dict(total_calls)}")
