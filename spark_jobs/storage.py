"""Tiny object-store helper for the job's small files (manifest, npz/JSON PCA state, batch reports).

URIs are ``s3://bucket/key`` (boto3; honours the standard ``AWS_ENDPOINT_URL`` so moto works locally),
``file:///abs/path`` or a plain path. Parquet never goes through here: Spark writes it with the filesystem
the lake URI names. boto3 clients are created lazily (never at import time) and cached per process.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote


class ObjectExistsError(FileExistsError):
    """Raised by :func:`write_bytes` with ``exclusive=True`` when the target already exists."""


@functools.cache
def _s3_client():  # pragma: no cover - exercised against moto/AWS, not in unit tests
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 8}))


def is_s3(uri: str) -> bool:
    """True for ``s3://`` / ``s3a://`` URIs."""
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")`` (also ``s3a://``), split on the first ``/`` after the bucket.

    No URL parsing: an S3 key is any UTF-8 text, so ``#``, ``?``, ``%``, spaces and unicode are kept as they are
    (``urlparse`` would cut ``images/a#b.jpg`` at the fragment and fetch ``images/a``; issue 18 item 5).

    Raises:
        ValueError: ``uri`` is not an ``s3://`` / ``s3a://`` URI or names no bucket.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("s3", "s3a"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def local_path(uri: str) -> Path:
    """Local filesystem path of a ``file://`` URI or plain path.

    A ``file://`` URI's path is percent-decoded (RFC 8089) but never cut at ``#`` or ``?``: file names may hold
    them (same reason as :func:`split_s3`). ``file://localhost/p`` is ``/p``; a plain path is taken as is.
    """
    if uri.startswith("file://"):
        rest = uri[len("file://"):]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        return Path(unquote(rest))
    return Path(uri)


def join(root: str, *parts: str) -> str:
    """Join URI/path segments with ``/`` (no normalisation of the scheme part)."""
    out = root.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def read_bytes(uri: str, version_id: str | None = None) -> bytes:
    """Read a whole object/file; with ``version_id`` that version of an S3 object (``GetObject VersionId``).

    Local files have no versions: ``version_id`` is ignored for them.

    Raises:
        FileNotFoundError: local file missing, or S3 ``NoSuchKey``/404.
        OSError / botocore errors: other I/O failures.
    """
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            version = {"VersionId": version_id} if version_id else {}
            return _s3_client().get_object(Bucket=bucket, Key=key, **version)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404", "NotFound"):
                raise FileNotFoundError(uri) from err
            raise
    return local_path(uri).read_bytes()


def open_binary(uri: str) -> BinaryIO:
    """A readable binary file object over a whole object/file (close it; a ``with`` block does).

    A local file is opened in place, so a reader such as ``numpy.load`` fills its own arrays straight from it (no
    intermediate ``bytes`` copy: a 35 MB PCA state loads in about a third of the time); an S3 object is read whole
    into memory (``io.BytesIO``).

    Raises:
        FileNotFoundError: as :func:`read_bytes`.
    """
    if is_s3(uri):
        return io.BytesIO(read_bytes(uri))
    return local_path(uri).open("rb")


def write_bytes(uri: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write a whole object/file, creating local parent directories.

    Args:
        exclusive: fail with :class:`ObjectExistsError` if the target exists (S3 conditional put
            ``If-None-Match: *``; local ``open(..., "xb")``). Used so PCA versions are never overwritten.
    """
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        kwargs = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            _s3_client().put_object(Bucket=bucket, Key=key, Body=data, **kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectExistsError(uri) from err
            raise
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        try:
            with open(path, "xb") as fh:
                fh.write(data)
        except FileExistsError as err:
            raise ObjectExistsError(uri) from err
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic on POSIX: readers never see a half-written report


def _s3_children(prefix_uri: str) -> tuple[list[str], list[str]]:
    """Object names and "sub-directory" names directly under an ``s3://`` directory URI (ListObjectsV2 with
    delimiter ``/``, every page): ``(names, dirs)``, unsorted."""
    bucket, key = split_s3(prefix_uri)
    key = key.rstrip("/") + "/"
    names: list[str] = []
    dirs: list[str] = []
    paginator = _s3_client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=key, Delimiter="/"):
        names.extend(obj["Key"][len(key) :] for obj in page.get("Contents", []))
        dirs.extend(p["Prefix"][len(key) :].rstrip("/") for p in page.get("CommonPrefixes", []))
    return names, dirs


def list_names(prefix_uri: str) -> list[str]:
    """Names (last path segment) of the objects/files directly under a "directory" URI; [] if absent."""
    if is_s3(prefix_uri):
        return sorted(_s3_children(prefix_uri)[0])
    path = local_path(prefix_uri)
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


def list_dirs(prefix_uri: str) -> list[str]:
    """Names of the "sub-directories" directly under a directory URI (S3 common prefixes), sorted; [] if absent."""
    if is_s3(prefix_uri):
        return sorted(_s3_children(prefix_uri)[1])
    path = local_path(prefix_uri)
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def size(uri: str) -> int:
    """Size in bytes of an object/file. Raises FileNotFoundError when absent."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            return int(_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as err:
            raise FileNotFoundError(uri) from err
    return local_path(uri).stat().st_size


def delete(uri: str) -> None:
    """Delete an object/file; no error if it is already absent."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_client().delete_object(Bucket=bucket, Key=key)
        return
    local_path(uri).unlink(missing_ok=True)


def exists(uri: str) -> bool:
    """True if the object/file exists."""
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            _s3_client().head_object(Bucket=bucket, Key=key)
            return True
    except Exception:  # botocore ClientError 404 (or no access): treat as absent
        return False
    return local_path(uri).is_file()
