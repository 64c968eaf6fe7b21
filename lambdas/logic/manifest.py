"""Batch manifest rendering: JSON lines read by the Spark job (format in docs/contracts.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def manifest_record(image: Mapping[str, Any]) -> dict[str, Any]:
    """One manifest object from an image item (``bucket``, ``key``, ``etag``, ``size``, ``label``, ``version_id``,
    ``event_time``, ``sequencer``: the S3 event's, null when the image was found by listing).

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


def render_erasures(erasures: Iterable[Mapping[str, Any]]) -> str:
    """Erase JSON lines ``{"image_uri", "sequencer", "reason"}`` (docs/contracts.md), ordered by image_uri."""
    records = sorted(
        ({"image_uri": e["image_uri"], "sequencer": e.get("sequencer"), "reason": e["reason"]} for e in erasures),
        key=lambda r: (r["image_uri"], r["sequencer"] or ""),
    )
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
