"""Small-file storage (local and S3 via moto) and driver-side weights resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from spark_jobs import storage
from spark_jobs.featurize.models import resolve_weights
from spark_jobs.featurize.network import ModelSpec, _local_weights_file
from spark_jobs.manifest import ManifestError, parse_manifest


@pytest.fixture
def s3_bucket(aws_credentials):
    with mock_aws():
        storage._s3_client.cache_clear()
        boto3.client("s3", region_name="eu-west-3").create_bucket(
            Bucket="lake-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        yield "s3://lake-bucket/lake"
    storage._s3_client.cache_clear()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_write_read_list_and_exclusive_create(backend: str, tmp_path, request) -> None:
    # GIVEN a local directory or an S3 prefix
    root = str(tmp_path) if backend == "local" else request.getfixturevalue("s3_bucket")
    # WHEN files are written, listed and re-created exclusively
    storage.write_bytes(storage.join(root, "pca", "m", "v000001.json"), b"{}", exclusive=True)
    storage.write_bytes(storage.join(root, "pca", "m", "b.npz"), b"1")
    storage.write_bytes(storage.join(root, "pca", "m", "b.npz"), b"2")  # plain writes replace
    # THEN reads return the bytes, listing is by name, and an exclusive create never overwrites
    assert storage.read_bytes(storage.join(root, "pca", "m", "b.npz")) == b"2"
    assert storage.list_names(storage.join(root, "pca", "m")) == ["b.npz", "v000001.json"]
    assert storage.list_names(storage.join(root, "pca", "absent")) == []
    assert storage.list_dirs(storage.join(root, "pca")) == ["m"] and storage.list_dirs(storage.join(root, "no")) == []
    assert storage.list_names(storage.join(root, "pca")) == []  # only the sub-directory "m" is there
    with pytest.raises(storage.ObjectExistsError):
        storage.write_bytes(storage.join(root, "pca", "m", "v000001.json"), b"other", exclusive=True)
    assert storage.read_bytes(storage.join(root, "pca", "m", "v000001.json")) == b"{}"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "nope.json"))


def test_weights_resolution_names_the_feature_space(tmp_path) -> None:
    # GIVEN weights sources  WHEN resolved on the driver  THEN model_id says exactly which weights are used
    weights = tmp_path / "custom.weights.h5"
    weights.write_bytes(b"not really weights but hashed")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert resolve_weights("random").model_id == "resnet50-random0-224"
    assert resolve_weights("random:42", 160).model_id == "resnet50-random42-160"
    assert resolve_weights(str(weights)).model_id == f"resnet50-file{sha[:12]}-224"
    assert resolve_weights(f"file://{weights}").weights_sha256 == sha
    assert resolve_weights("projection:3").model_id == "projection3-224"
    for bad in ("random:x", "resnet", str(tmp_path / "missing.h5")):
        with pytest.raises((ValueError, FileNotFoundError)):
            resolve_weights(bad)
    # AND a file that changes after resolution is refused on the workers
    spec = resolve_weights(str(weights))
    assert _local_weights_file(spec) == str(weights)
    weights.write_bytes(b"changed")
    with pytest.raises(RuntimeError, match="sha256"):
        _local_weights_file(spec)
    # AND the fallback reason is not part of the model identity (cache key)
    assert ModelSpec("random", 224, 0, fallback_reason="offline") == ModelSpec("random", 224, 0)


def test_manifest_parsing_dedupes_and_reports_bad_lines() -> None:
    # GIVEN JSON lines with a duplicate image and blank lines  WHEN parsed  THEN one record per image
    data = b'{"image_uri": "/a.jpg", "label": "A", "size": 3}\n\n{"image_uri": "/a.jpg"}\n{"image_uri": "/b.jpg"}\n'
    records = parse_manifest(data)
    assert [(r["image_uri"], r["label"], r["size"]) for r in records] == [("/a.jpg", "A", 3), ("/b.jpg", None, None)]
    # AND malformed lines are errors naming the line
    with pytest.raises(ManifestError, match="line 2"):
        parse_manifest(b'{"image_uri": "/a.jpg"}\n{oops\n')
    with pytest.raises(ManifestError, match="record 1"):
        parse_manifest(b'{"uri": "/a.jpg"}\n')


def _offline(url, timeout=None):
    import urllib.error

    raise urllib.error.URLError("[Errno 101] Network is unreachable")


def test_imagenet_unavailable_falls_back_loudly_to_random0(monkeypatch, capsys, tmp_path) -> None:
    # GIVEN a machine where the Keras ImageNet file cannot be fetched (forced, whatever the network here)
    import urllib.request

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    # WHEN --weights imagenet is resolved on the driver
    spec = resolve_weights("imagenet", 160)
    # THEN the seeded random network is used, named as such, the reason is kept for the report, and it is loud
    assert spec.model_id == "resnet50-random0-160"
    assert spec.fallback_reason is not None and "URLError" in spec.fallback_reason
    err = capsys.readouterr().err
    assert "FALLING BACK" in err and "resnet50-random0-160" in err
    # AND no partial file is left in the Keras cache
    assert not any((tmp_path / "models").iterdir())


def test_imagenet_weights_are_fetched_once_into_the_keras_cache_and_md5_checked(monkeypatch, tmp_path) -> None:
    # GIVEN an ImageNet weights "server" (urlopen) and an empty Keras cache; the expected md5 is the served bytes'
    import io
    import urllib.request

    from spark_jobs.featurize import models

    served = b"resnet50 notop weights " * 4096
    calls: list[str] = []

    def serve(url, timeout=None):
        calls.append(url)
        return io.BytesIO(served)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", serve)
    monkeypatch.setattr(models, "IMAGENET_WEIGHTS_MD5", hashlib.md5(served).hexdigest())
    # WHEN --weights imagenet is resolved twice
    first, second = resolve_weights("imagenet"), resolve_weights("imagenet")
    # THEN the ImageNet network is named, the file is where Keras' get_file(cache_subdir="models") reads it,
    # and it was downloaded once from Keras' URL
    assert first == second and first.model_id == "resnet50-imagenet-224" and first.fallback_reason is None
    assert (tmp_path / "models" / models.IMAGENET_WEIGHTS_FILE).read_bytes() == served
    assert calls == [models.IMAGENET_WEIGHTS_URL]
    # AND a download whose md5 differs is refused: loud fallback, the cached file is not replaced by it
    (tmp_path / "models" / models.IMAGENET_WEIGHTS_FILE).write_bytes(b"truncated")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"tampered"))
    spec = resolve_weights("imagenet")
    assert spec.model_id == "resnet50-random0-224" and "md5" in (spec.fallback_reason or "")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [models.IMAGENET_WEIGHTS_FILE]


@pytest.mark.slow
def test_imagenet_weights_constants_are_keras_own() -> None:
    # GIVEN the file name, URL and md5 the driver checks without importing Keras
    from keras.src.applications import resnet

    from spark_jobs.featurize import models

    # THEN they are exactly what keras.applications.ResNet50(include_top=False, weights="imagenet") downloads
    assert models.IMAGENET_WEIGHTS_URL == resnet.BASE_WEIGHTS_PATH + models.IMAGENET_WEIGHTS_FILE
    assert models.IMAGENET_WEIGHTS_FILE == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert resnet.WEIGHTS_HASHES["resnet50"][1] == models.IMAGENET_WEIGHTS_MD5


def test_s3_weights_are_downloaded_once_checked_and_renamed_into_place(s3_bucket) -> None:
    # GIVEN a weights object in S3
    data = b"weights bytes " * 1000
    uri = "s3://lake-bucket/weights/resnet50.weights.h5"
    storage.write_bytes(uri, data)
    # WHEN resolved on the driver and fetched on a worker
    spec = resolve_weights(uri)
    path = _local_weights_file(spec)
    # THEN model_id names the bytes, the local copy is complete and keeps the suffix Keras dispatches on
    assert spec.model_id == f"resnet50-file{hashlib.sha256(data).hexdigest()[:12]}-224"
    assert path.endswith(".weights.h5") and Path(path).read_bytes() == data
    # AND an object replaced after resolution is refused
    storage.write_bytes(uri, b"other weights")
    with pytest.raises(RuntimeError, match="sha256"):
        _local_weights_file(spec)


@pytest.mark.slow
def test_weights_file_reproduces_the_network_it_was_saved_from(tmp_path) -> None:
    # GIVEN the weights of ResNet50 random:1 (small 64x64 input: same weights, less compute) saved to a file
    import numpy as np

    from spark_jobs.featurize.network import build_resnet

    source = build_resnet(ModelSpec("random", 64, 1))
    weights = tmp_path / "r1.weights.h5"
    source.save_weights(str(weights))
    # WHEN the file is resolved as --weights and the network is built from it
    spec = resolve_weights(str(weights), 64)
    loaded = build_resnet(spec)
    # THEN it computes exactly what the source network computes, under a file-derived model_id
    x = np.random.default_rng(0).uniform(-100, 100, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), source.predict_on_batch(x))
    assert spec.model_id.startswith("resnet50-file") and spec.model_id.endswith("-64")


@pytest.mark.slow
def test_bfloat16_precision_is_its_own_feature_space_close_to_float32() -> None:
    # GIVEN the same ResNet50 weights (random:1, 64x64) in float32 and in opt-in mixed bfloat16
    import keras
    import numpy as np

    from spark_jobs.featurize.models import get_featurizer

    fp32, bf16 = resolve_weights("random:1", 64), resolve_weights("random:1", 64, "bfloat16")
    # THEN they are different feature spaces (model_id, cache key) ...
    assert (fp32.model_id, bf16.model_id) == ("resnet50-random1-64", "resnet50-random1-64-bf16")
    assert fp32 != bf16
    # WHEN both featurize the same pixels
    pixels = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    a, b = get_featurizer(fp32)(pixels), get_featurizer(bf16)(pixels)
    # THEN bf16 gives float32 vectors close to the float32 ones (bf16 keeps 8 bits of mantissa)
    assert b.dtype == np.float32 and b.shape == a.shape == (4, 2048)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.98
    # AND building the bf16 network left the process-wide Keras policy at float32
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="precision"):
        resolve_weights("random", 64, "float16")


def test_read_bytes_and_fetch_decode_take_the_manifest_version_of_an_overwritten_object(s3_bucket) -> None:
    # GIVEN a versioned bucket where an image was recorded at version 1, then overwritten by a non-image
    import io

    from PIL import Image

    from spark_jobs.featurize.images import fetch_decode

    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.put_bucket_versioning(Bucket="lake-bucket", VersioningConfiguration={"Status": "Enabled"})
    png = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(png, format="PNG")
    first = s3.put_object(Bucket="lake-bucket", Key="images/Apple/1.png", Body=png.getvalue())["VersionId"]
    s3.put_object(Bucket="lake-bucket", Key="images/Apple/1.png", Body=b"not an image any more")
    uri = "s3://lake-bucket/images/Apple/1.png"
    # WHEN read with and without the recorded version id THEN each gives its own bytes
    assert storage.read_bytes(uri, first) == png.getvalue()
    assert storage.read_bytes(uri) == b"not an image any more"
    # AND the decode step featurizes the recorded version (the latest would be rejected: not_an_image)
    sha, width, height, _pixels, reason = fetch_decode(uri, 32, first)
    assert (width, height, reason) == (8, 6, None) and sha == hashlib.sha256(png.getvalue()).hexdigest()
    assert fetch_decode(uri, 32)[4] == "not_an_image"
    # AND an unknown version is a missing object (FileNotFoundError), unreadable for the decode step
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(uri, "no-such-version")
    assert fetch_decode(uri, 32, "no-such-version")[4] == "unreadable"


def test_the_one_pass_gets_each_recorded_version_id_of_the_manifest(spark, tmp_path) -> None:
    # GIVEN a manifest with a version id on one row, none (null / empty) on the others
    from spark_jobs.featurize.one_pass import pass_input
    from spark_jobs.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"image_uri": "s3://b/images/A/1.jpg", "version_id": "v1"}\n'
        '{"image_uri": "s3://b/images/A/2.jpg", "version_id": null}\n'
        '{"image_uri": "s3://b/images/A/3.jpg", "version_id": ""}\n'
    )
    manifest = read_manifest(spark, str(path), num_partitions=2)
    # WHEN the pass's input rows are built THEN each row carries its recorded version (the others fetch the latest)
    rows = pass_input(manifest)
    versions = {r["image_uri"]: r["version_id"] for r in rows.collect()}
    assert versions == {"s3://b/images/A/1.jpg": "v1", "s3://b/images/A/2.jpg": None, "s3://b/images/A/3.jpg": ""}
    # AND the manifest's partitions are kept
    assert rows.rdd.getNumPartitions() == manifest.rdd.getNumPartitions() == 2
    # AND a manifest frame without the column reads null versions
    bare = spark.createDataFrame([("s3://b/x.jpg", None)], "image_uri string, label string")
    assert [r["version_id"] for r in pass_input(bare).collect()] == [None]
