"""Local mode accepts 0-byte uploads (issue 18, item 11): the moto server (waitress) used to hang on an empty body."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from fruits.local.demo import DemoConfig, run_demo
from fruits.local.images import list_images
from spark_jobs.lakehouse.tables import Lake, scan

pytestmark = pytest.mark.slow


def test_demo_on_a_folder_holding_a_zero_byte_photo_rejects_it_as_empty(sample_dir: Path, tmp_path: Path) -> None:
    # GIVEN 4 real photos and one 0-byte .jpg (AWS accepts empty objects; the old local server hung on them)
    root = tmp_path / "photos" / "Training"
    for photo in list_images(sample_dir / "Training", limit=4):
        target = root / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    empty = root / "Kiwi" / "empty_upload.jpg"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    config = DemoConfig(
        images=root,
        lake=tmp_path / "lake",
        waves=1,
        threshold=100,
        weights="projection:0",
        pca_k=2,
        master="local[1]",
        report=False,
    )
    # WHEN the whole demo loop runs (upload, ingest, flush, one job run)
    result = run_demo(config, Console(quiet=True))
    # THEN the 5 photos are uploaded and recorded, 4 featurized, and the empty one is a reject row "empty"
    assert result.uploaded == 5 and result.recorded == 5
    assert result.featurized == 4 and result.rejected == 1
    rejects = scan(Lake.at(str(config.lake)), "rejects").to_pylist()
    assert [(Path(r["image_uri"]).name, r["reason"]) for r in rejects] == [("empty_upload.jpg", "empty")]


def test_the_local_moto_server_stores_an_empty_object_at_once(aws_credentials: None) -> None:
    # GIVEN the local moto server (waitress) of `fruits demo`, and a client that would retry a hang only once
    import boto3
    from botocore.config import Config

    from fruits.local.moto_server import moto_server

    with moto_server():
        s3 = boto3.client("s3", config=Config(retries={"max_attempts": 1}, read_timeout=10))
        s3.create_bucket(Bucket="empty-body", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        # WHEN an empty object is put (a 0-byte photo, or the empty manifest of an erasure-only batch)
        s3.put_object(Bucket="empty-body", Key="manifests/b000001-00000000.jsonl", Body=b"")
        # THEN it is stored, 0 bytes (before the fix: ReadTimeoutError after 10 s)
        assert s3.get_object(Bucket="empty-body", Key="manifests/b000001-00000000.jsonl")["Body"].read() == b""
