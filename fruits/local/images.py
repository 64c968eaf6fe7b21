"""Choosing and uploading the demo photos."""

from __future__ import annotations

import itertools
import mimetypes
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from lambdas.resources import IMAGE_SUFFIXES, IMAGES_PREFIX


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (any depth, suffix in ``IMAGE_SUFFIXES`` in any case), sorted; may be empty."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_images(root: Path, limit: int | None = None) -> list[Path]:
    """Image files under ``root`` (suffix in ``IMAGE_SUFFIXES``, any case), sorted.

    With ``limit`` the files are taken round-robin across their folders (classes), so a small demo still
    covers every label. Raises ``FileNotFoundError`` if ``root`` holds no image.
    """
    files = image_files(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    if limit is None or limit >= len(files):
        return files
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    interleaved = (p for group in itertools.zip_longest(*by_folder.values()) for p in group if p is not None)
    return sorted(itertools.islice(interleaved, limit))


def object_key(root: Path, path: Path) -> str:
    """S3 key of ``path``: images prefix + the root folder's name + the path below it (labels survive)."""
    return f"{IMAGES_PREFIX}{root.name}/{path.relative_to(root).as_posix()}"


def split_waves(items: list[Path], waves: int) -> list[list[Path]]:
    """Split ``items`` into ``waves`` contiguous, near-equal, non-empty parts (fewer if too few items)."""
    waves = max(1, min(waves, len(items)))
    size, extra = divmod(len(items), waves)
    parts, start = [], 0
    for index in range(waves):
        end = start + size + (1 if index < extra else 0)
        parts.append(items[start:end])
        start = end
    return parts


def put_photo(s3: Any, bucket: str, root: Path, path: Path) -> None:
    """Upload one photo with boto3 client ``s3`` to ``bucket`` under :func:`object_key`, with its content type."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    s3.upload_file(str(path), bucket, object_key(root, path), ExtraArgs={"ContentType": content_type})


def upload(
    bucket: str, root: Path, paths: Iterable[Path], on_done: Callable[[], None] | None = None, threads: int = 8
) -> int:
    """Upload ``paths`` to ``bucket`` under :func:`object_key`, ``threads`` at a time; returns the count.

    The client comes from a session of its own: this may run on a thread beside others creating clients (boto3's
    default session is not thread-safe to create clients from).
    """
    s3 = boto3.session.Session().client("s3")

    def put(path: Path) -> None:
        put_photo(s3, bucket, root, path)
        if on_done:
            on_done()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(1 for _ in pool.map(put, paths))
