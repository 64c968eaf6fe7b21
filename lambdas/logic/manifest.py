"""Batch manifest rendering: JSON lines read by the Spark job (format in docs/contracts.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def manifest_record(image: Mapping[str, Any]) -> dict[str, Any]:
    """One manifest object from an image item (``bucket``, ``key``, ``etag``, ``size``, ``label``, ``version_id``,
    ``event_time``, ``sequencer``: the S3 event's, null when the image was found by listing; ``last_modified``:
    the listing's LastModified, null for an event-recorded image), so the job can build each image's
    :class:`lambdas.contracts.VersionStamp`.

    ``etag`` is written quoted, as S3 returns it; ``size`` is an int in bytes; ``label`` null when the item has none.
    """
    etag = image.get("etag")
    return {
        "image_uri": f"s3://{image['bucket']}/{image['key']}",
        "bucket": image["bucket"],
        "key": image["key"],
        "version_id": image.get("version_id"),
        "etag": f'"{etag}"' if etag else None,
        "size": int(image["size"]),
        "label": image.get("label"),
        "event_time": image.get("event_time"),
        "sequencer": image.get("sequencer"),
        "last_modified": image.get("last_modified"),
    }


def render_manifest(images: Iterable[Mapping[str, Any]]) -> str:
    """JSON-lines text (UTF-8 safe, one object per line, trailing newline), ordered by ``image_uri``."""
    records = sorted((manifest_record(image) for image in images), key=lambda r: (r["image_uri"], r["etag"] or ""))
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def manifest_key(manifests_prefix: str, batch_id: str) -> str:
    """S3 key of a batch manifest: ``<manifests_prefix><batch_id>.jsonl``."""
    return f"{manifests_prefix}{batch_id}.jsonl"


def erase_manifest_key(manifests_prefix: str, batch_id: str) -> str:
    """S3 key of a batch's erasures, beside its manifest: ``<manifests_prefix><batch_id>.erase.jsonl``."""
    return f"{manifests_prefix}{batch_id}.erase.jsonl"


def erase_record(erasure: Mapping[str, Any]) -> dict[str, Any]:
    """One erase line from an erasure item: ``image_uri``, ``sequencer``, ``reason``, ``time`` (ISO-8601 UTC of
    the delete event, or of the erase request when there is no event) and ``version_id`` (the delete marker's,
    null when unknown): the delete's :class:`lambdas.contracts.VersionStamp` (docs/contracts.md)."""
    return {
        "image_uri": erasure["image_uri"],
        "sequencer": erasure.get("sequencer"),
        "reason": erasure["reason"],
        "time": erasure.get("time") or erasure.get("requested_at"),
        "version_id": erasure.get("version_id"),
    }


def render_erasures(erasures: Iterable[Mapping[str, Any]]) -> str:
    """Erase JSON lines (:func:`erase_record`, docs/contracts.md), ordered by image_uri then sequencer."""
    records = sorted(map(erase_record, erasures), key=lambda r: (r["image_uri"], r["sequencer"] or ""))
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
