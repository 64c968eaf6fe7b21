"""Pure logic and settings: keys, labels, batch ids and sizes, manifest lines, the StartJobRun request."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from lambdas.config import SettingsError, settings_from_env
from lambdas.identity import image_item_key, normalize_etag, sequencer_key
from lambdas.logic.batches import (
    BATCH_ID_RE,
    flush_claim_size,
    new_batch_id,
    threshold_claim_size,
    time_to_feature_seconds,
)
from lambdas.logic.job_request import build_start_job_run_request, client_token, spark_submit_parameters
from lambdas.logic.keys import decode_event_key, label_for_key, skip_reason
from lambdas.logic.manifest import erase_manifest_key, manifest_key, render_manifest

ENV = {
    "DATA_BUCKET": "fruits-data",
    "MANIFEST_TABLE": "fruits-manifest",
    "EMR_APPLICATION_ID": "00fs5mjq8qd9i109",
    "EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/job",
    "JOB_ENTRY_POINT": "s3://fruits-data/code/main.py",
}


@pytest.mark.parametrize(
    "key",
    [
        "images/Training/Apple Braeburn/0_100.jpg",
        "images/a+b/c d+e.png",
        "images/Pêche/ü 100%.jpeg",
        "images/x/%41%20.jpg",
        "images/日本/りんご.tif",
    ],
)
def test_decode_event_key_inverts_s3_url_encoding(key: str) -> None:
    # GIVEN a key as S3 puts it in a notification (URL-encoded, space as '+') WHEN decoded THEN it is the real key
    assert decode_event_key(quote_plus(key, safe="/")) == key


def test_skip_reasons_and_labels() -> None:
    assert skip_reason("images/Training/Kiwi/1.JPG", "images/") is None
    assert skip_reason("manifests/b1.jsonl", "images/") == "outside_prefix"
    assert skip_reason("images/Training/Kiwi/", "images/") == "folder_marker"
    assert skip_reason("images/Training/Kiwi/1.gif", "images/") == "not_an_image_suffix"
    assert skip_reason("images/1.jpg", "images/") is None  # ingested, unlabelled
    assert label_for_key("images/Training/Apple Braeburn/0_100.jpg", "images/") == "Apple Braeburn"
    assert label_for_key("images/multiple_fruits/big.jpg", "images/") == "multiple_fruits"
    assert label_for_key("images/1.jpg", "images/") is None
    assert label_for_key("uploads/2026/Kiwi/1.jpg", "uploads/2026/") == "Kiwi"
    with pytest.raises(ValueError):
        label_for_key("loose.jpg", "images/")


def test_image_identity_ignores_etag_quotes() -> None:
    # GIVEN the same object seen from a notification (bare ETag) and from ListObjectsV2 (quoted ETag)
    assert normalize_etag('"abc"') == normalize_etag("abc") == "abc"
    assert image_item_key("b", "images/x/1.jpg", '"abc"') == image_item_key("b", "images/x/1.jpg", "abc")
    assert image_item_key("b", "images/x/1.jpg", "abc") != image_item_key("b", "images/x/1.jpg", "abd")


def test_batch_ids_sort_in_sealing_order_and_match_the_contract() -> None:
    ids = [new_batch_id(seq) for seq in (1, 2, 10, 99, 100, 123456)]
    assert ids == sorted(ids)
    assert all(BATCH_ID_RE.match(batch_id) for batch_id in ids)
    assert new_batch_id(7, "0a1b2c3d") == "b000007-0a1b2c3d"
    with pytest.raises(ValueError):
        new_batch_id(-1)


@pytest.mark.parametrize(("pending", "expected"), [(0, 0), (99, 0), (100, 100), (107, 100), (250, 200), (5000, 1000)])
def test_threshold_claims_multiples_of_the_threshold_capped(pending: int, expected: int) -> None:
    assert threshold_claim_size(pending, threshold=100, max_images=1000) == expected


def test_time_to_feature_counts_live_images_with_an_event_time_and_skips_the_rest() -> None:
    # GIVEN images as the manifest table returns them, handled at now = 02:05:00 UTC
    now = dt.datetime(2026, 11, 25, 2, 5, tzinfo=dt.UTC)
    images = [
        {"event_time": "2026-11-25T02:00:00.123Z"},  # S3's form: 299.877 s
        {"event_time": "2026-11-25T02:04:30+00:00"},  # 30 s
        {"event_time": "2026-11-25T02:05:00.000400Z"},  # 0.4 ms after now (clock skew): 0
        {"event_time": "2026-11-25T02:00:00Z", "fate": "superseded"},
        {"event_time": "2026-11-25T02:00:00Z", "fate": "removed"},
        {"event_time": None},  # found by listing / backfill
        {},
        {"event_time": "yesterday"},
        {"event_time": 1764036000},
    ]
    # WHEN the time to feature is computed THEN only the three live images with a valid event time count, in order
    assert time_to_feature_seconds(images, now) == [299.877, 30.0, 0.0]
    assert time_to_feature_seconds([], now) == []


def test_flush_claims_everything_up_to_the_cap() -> None:
    assert [flush_claim_size(n, 1000) for n in (0, 1, 999, 1500)] == [0, 1, 999, 1000]


def test_manifest_lines_follow_the_contract() -> None:
    # GIVEN two image items WHEN rendered THEN one JSON object per line, sorted, quoted ETag, unicode kept
    lines = render_manifest(
        [
            {"bucket": "b", "key": "images/T/Pêche/2.jpg", "etag": "e2", "size": 7, "label": "Pêche"},
            {
                "bucket": "b",
                "key": "images/T/Apple Braeburn/0_100.jpg",
                "etag": "e1",
                "size": 4711,
                "label": "Apple Braeburn",
                "version_id": "v1",
            },
        ]
    ).splitlines()
    assert json.loads(lines[0]) == {
        "image_uri": "s3://b/images/T/Apple Braeburn/0_100.jpg",
        "bucket": "b",
        "key": "images/T/Apple Braeburn/0_100.jpg",
        "version_id": "v1",
        "etag": '"e1"',
        "size": 4711,
        "label": "Apple Braeburn",
        "event_time": None,
        "sequencer": None,
        "last_modified": None,
    }
    assert "Pêche" in lines[1] and json.loads(lines[1])["version_id"] is None
    assert manifest_key("manifests/", "b000001-00000000") == "manifests/b000001-00000000.jsonl"
    assert erase_manifest_key("manifests/", "b000001-00000000") == "manifests/b000001-00000000.erase.jsonl"


def test_sequencers_compare_after_left_padding_with_zeros() -> None:
    # GIVEN S3 sequencers of different lengths WHEN made comparable THEN the longer (later) one sorts after
    assert sequencer_key("0A") < sequencer_key("00B0") < sequencer_key("0000000000000A00")
    assert sequencer_key("0055aa") == sequencer_key("55AA") and sequencer_key(None) is None


def test_start_job_run_request_and_client_tokens() -> None:
    settings = settings_from_env(
        {
            **ENV,
            "JOB_PY_FILES": "s3://fruits-data/code/spark_jobs.zip",
            "SPARK_SUBMIT_PARAMETERS": "--conf spark.executor.memory=4g",
        }
    )
    request = build_start_job_run_request(settings, batch_id="b000003-0a1b2c3d", attempt=2, manifest_uri="s3://m")
    assert request["clientToken"] == "b000003-0a1b2c3d-a2" == client_token("b000003-0a1b2c3d", 2)
    assert request["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--manifest",
        "s3://m",
        "--lake",
        "s3://fruits-data/lake",
        "--batch-id",
        "b000003-0a1b2c3d",
        "--weights",
        "imagenet",
        "--pca-k",
        "150",
    ]
    assert spark_submit_parameters(settings) == (
        "--py-files s3://fruits-data/code/spark_jobs.zip --conf spark.executor.memory=4g"
    )
    assert request["executionTimeoutMinutes"] == 120
    assert request["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"] == {
        "logUri": "s3://fruits-data/logs/"
    }
    without = build_start_job_run_request(settings_from_env(ENV), batch_id="b1", attempt=1, manifest_uri="s3://m")
    assert "sparkSubmitParameters" not in without["jobDriver"]["sparkSubmit"]
    # the opt-in bf16 precision is passed to the job; float32 (the default) adds nothing
    bf16 = settings_from_env({**ENV, "JOB_PRECISION": "bfloat16"})
    args = build_start_job_run_request(bf16, batch_id="b1", attempt=1, manifest_uri="s3://m")["jobDriver"][
        "sparkSubmit"
    ]["entryPointArguments"]
    assert args[-2:] == ["--precision", "bfloat16"] and "--calibration" not in args
    # int8 also passes its calibration manifest: JOB_CALIBRATION, by default the data bucket's calibration/ one
    for env, want in (({}, "s3://fruits-data/calibration/manifest.jsonl"), ({"JOB_CALIBRATION": "/photos"}, "/photos")):
        int8 = settings_from_env({**ENV, "JOB_PRECISION": "int8", **env})
        args = build_start_job_run_request(int8, batch_id="b1", attempt=1, manifest_uri="s3://m")["jobDriver"][
            "sparkSubmit"
        ]["entryPointArguments"]
        assert args[-4:] == ["--precision", "int8", "--calibration", want]
    with pytest.raises(SettingsError, match="JOB_PRECISION"):
        settings_from_env({**ENV, "JOB_PRECISION": "float16"})
    # the engine setting is passed as --engine; empty (the default) leaves the job's per-architecture default
    assert (
        "--engine"
        not in build_start_job_run_request(settings_from_env(ENV), batch_id="b1", attempt=1, manifest_uri="s3://m")[
            "jobDriver"
        ]["sparkSubmit"]["entryPointArguments"]
    )
    ort = settings_from_env({**ENV, "JOB_ENGINE": "onnxruntime"})
    args = build_start_job_run_request(ort, batch_id="b1", attempt=1, manifest_uri="s3://m")["jobDriver"][
        "sparkSubmit"
    ]["entryPointArguments"]
    assert args[args.index("--engine") + 1] == "onnxruntime"
    with pytest.raises(SettingsError, match="JOB_ENGINE"):
        settings_from_env({**ENV, "JOB_ENGINE": "tensorrt"})
    with pytest.raises(ValueError):
        client_token("b1", 0)


def test_settings_defaults_and_one_line_errors() -> None:
    settings = settings_from_env(ENV)
    assert (settings.images_prefix, settings.batch_threshold, settings.batch_max_images) == ("images/", 100, 1000)
    assert (settings.max_attempts, settings.pca_k, settings.job_weights) == (3, 150, "imagenet")
    assert settings.lake_uri == "s3://fruits-data/lake" and settings.job_log_uri == "s3://fruits-data/logs/"
    with pytest.raises(Exception, match="frozen"):
        settings.batch_threshold = 5  # type: ignore[misc]
    with pytest.raises(SettingsError) as err:
        settings_from_env({**ENV, "BATCH_THRESHOLD": "500", "BATCH_MAX_IMAGES": "100", "PCA_K": "zero"})
    assert "\n" not in str(err.value) and "PCA_K" in str(err.value)
    with pytest.raises(SettingsError, match="BATCH_MAX_IMAGES"):
        settings_from_env({**ENV, "BATCH_THRESHOLD": "500", "BATCH_MAX_IMAGES": "100"})


def test_handlers_import_without_any_environment() -> None:
    # GIVEN a process with no AWS or pipeline env vars WHEN every handler module is imported
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATA_", "MANIFEST_", "EMR_", "JOB_"))}
    code = (
        "import sys, lambdas.handlers.ingest, lambdas.handlers.job_state, lambdas.handlers.flush, "
        "lambdas.handlers.reconcile, lambdas.aws as a; assert a._clients == {}; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    # THEN they import, and no boto3 client exists yet (settings and clients are created at the first call)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_one_label_rule_for_keys_local_paths_and_uris() -> None:
    # GIVEN the same photo as an S3 key, a local path, a Windows path and a lake URI THEN one label rule names it
    from fruits.cli.evaluate import folder_label as evaluate_label
    from lambdas.logic.keys import folder_label, label_for_key

    assert label_for_key("images/Training/Apple Braeburn/0_100.jpg", "images/") == "Apple Braeburn"
    assert folder_label("/data/Training/Apple Braeburn/0_100.jpg") == "Apple Braeburn"
    assert folder_label("C:\\data\\Training\\Kiwi\\1.jpg") == "Kiwi"
    assert evaluate_label("s3://b/images/Test/Kiwi/3.jpg") == folder_label("s3://b/images/Test/Kiwi/3.jpg") == "Kiwi"
    # AND a bare file name has no label (None for the manifest, "" for the evaluation's fallback)
    assert folder_label("photo.jpg") is None and label_for_key("images/photo.jpg", "images/") is None
    assert evaluate_label("photo.jpg") == ""
