"""S3 keys and file names with ``#``, ``?``, ``%``, spaces and unicode are fetched as recorded (issue 18 item 5)."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from spark_jobs import storage
from spark_jobs.featurize.images import fetch_decode
from spark_jobs.featurize.models import resolve_weights
from spark_jobs.featurize.one_pass import featurize_batch
from spark_jobs.manifest import manifest_frame, parse_manifest

from .conftest import FAST_WEIGHTS

ODD_KEYS = ["images/Kiwi/a#b.jpg", "images/Kiwi/what?.jpg", "images/Kiwi/100%.jpg", "images/Kiwi/a%23b.jpg",
            "images/Kiwi/two words+.jpg", "images/Kiwi/pêche ☃.jpg", "images/Kiwi/x?y=1#z&w.jpg"]


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("uri, expected", [
    ("s3://b/images/a#b.jpg", ("b", "images/a#b.jpg")),
    ("s3://b/images/a?x=1.jpg", ("b", "images/a?x=1.jpg")),
    ("s3://b/images/100%25 x.jpg", ("b", "images/100%25 x.jpg")),
    ("s3a://b/k/pêche.jpg", ("b", "k/pêche.jpg")),
    ("s3://b", ("b", "")),
])
def test_split_s3_keeps_every_character_of_the_key(uri: str, expected: tuple[str, str]) -> None:
    # GIVEN an S3 URI whose key holds URL syntax WHEN split THEN bucket and key are exactly the text around the "/"
    assert storage.split_s3(uri) == expected


@pytest.mark.parametrize("uri", ["http://b/k", "s3:///k", "images/a.jpg"])
def test_split_s3_refuses_what_is_not_an_s3_uri(uri: str) -> None:
    with pytest.raises(ValueError):
        storage.split_s3(uri)


def test_file_uris_are_percent_decoded_but_never_cut_at_hash_or_question_mark() -> None:
    assert storage.local_path("file:///tmp/a#b?.jpg") == Path("/tmp/a#b?.jpg")
    assert storage.local_path("file:///tmp/two%20words.jpg") == Path("/tmp/two words.jpg")
    assert storage.local_path("file://localhost/tmp/x.jpg") == Path("/tmp/x.jpg")
    assert storage.local_path("/tmp/100%25.jpg") == Path("/tmp/100%25.jpg")


def test_fetch_decode_reads_odd_s3_keys_at_their_exact_key(aws_credentials) -> None:
    # GIVEN objects whose keys hold '#', '?', '%', spaces and unicode, and decoy objects at the truncated keys
    with mock_aws():
        storage._s3_client.cache_clear()
        s3 = boto3.client("s3", region_name="eu-west-3")
        s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        for i, key in enumerate(ODD_KEYS):
            s3.put_object(Bucket="data", Key=key, Body=_png((10 * i, 200, 30)))
        s3.put_object(Bucket="data", Key="images/Kiwi/a", Body=b"decoy: what urlparse would fetch")
        s3.put_object(Bucket="data", Key="images/Kiwi/what", Body=b"decoy")
        try:
            # WHEN each is fetched and decoded by its s3:// URI
            results = {key: fetch_decode(f"s3://data/{key}", 32) for key in ODD_KEYS}
        finally:
            storage._s3_client.cache_clear()
    # THEN every photo decodes (no 'unreadable', no decoy bytes) and each is its own object
    assert {key: r[4] for key, r in results.items()} == dict.fromkeys(ODD_KEYS)
    assert len({r[0] for r in results.values()}) == len(ODD_KEYS)


def test_the_featurize_pass_featurizes_files_with_odd_names(spark, tmp_path: Path) -> None:
    # GIVEN photos whose file names hold '#', '?', '%', spaces and unicode, named by file:// URIs and plain paths
    folder = tmp_path / "Kiwi"
    folder.mkdir()
    uris = []
    for i, key in enumerate(ODD_KEYS):
        name = key.rsplit("/", 1)[1]
        (folder / name).write_bytes(_png((10 * i, 200, 30)))
        uris.append(f"file://{folder / name}".replace("%", "%25") if i % 2 else str(folder / name))
    records = parse_manifest("".join(f'{{"image_uri": "{u}", "label": "Kiwi"}}\n' for u in uris).encode())
    spec = resolve_weights(FAST_WEIGHTS, 32)
    # WHEN the executors' one pass runs over them
    batch = featurize_batch(manifest_frame(spark, records, 2), spec, image_size=32, infer_batch_size=4)
    # THEN all are featurized, none rejected
    assert batch.rejects.num_rows == 0
    assert sorted(batch.features.column("image_uri").to_pylist()) == sorted(uris)
