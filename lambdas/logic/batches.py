"""Batch ids, batch sizing rules and the ages (seconds) the batching and job state metrics report."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from lambdas.contracts import BATCH_ID_RE


def new_batch_id(seq: int, suffix: str | None = None) -> str:
    """Batch id ``b<seq, 6+ digits>-<8 hex>``, sortable in sealing order (``seq`` comes from the manifest table).

    The random suffix keeps ids unique if the table is ever recreated while the lake (where the id is a
    partition value) is kept. Raises ValueError for a negative ``seq`` or a suffix breaking the id pattern.
    """
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    batch_id = f"b{seq:06d}-{suffix if suffix is not None else secrets.token_hex(4)}"
    if not BATCH_ID_RE.match(batch_id):
        raise ValueError(f"invalid batch id {batch_id!r}")
    return batch_id


def threshold_claim_size(pending: int, threshold: int, max_images: int) -> int:
    """Images a threshold seal claims: the largest multiple of ``threshold`` ≤ ``pending``, capped at ``max_images``.

    0 means "do not seal". With ``pending`` just past the threshold this is exactly ``threshold``, so a steady
    stream gives batches of exactly ``threshold`` images however many ingest Lambdas race; a backlog (e.g. after
    ``reconcile`` records lost images) is sealed in fewer, bigger batches.
    """
    if threshold < 1 or max_images < threshold:
        raise ValueError(f"need 1 <= threshold <= max_images, got {threshold}, {max_images}")
    if pending < threshold:
        return 0
    return min(max_images, pending - pending % threshold)


def flush_claim_size(pending: int, max_images: int) -> int:
    """Images a flush claims: everything pending (≥ 1) up to ``max_images``; 0 when nothing is pending."""
    return max(0, min(pending, max_images))


def age_seconds(recorded_at: str, now: dt.datetime) -> float:
    """Seconds from ``recorded_at`` (ISO-8601 UTC string as the manifest stores it, ``2026-11-25T02:00:00.123456Z``)
    to ``now`` (timezone-aware); negative if ``recorded_at`` is later. Raises ValueError if unparsable."""
    return (now - _parse_utc(recorded_at)).total_seconds()


def time_to_feature_seconds(images: Iterable[Mapping[str, Any]], now: dt.datetime) -> list[float]:
    """Seconds (≥ 0, rounded to 1 ms) from each live image's S3 event time to ``now``, in the order of ``images``.

    ``images`` are manifest image items; ``now`` is timezone-aware (when the batch's SUCCESS event is applied).
    Left out: images with a ``fate`` (superseded / removed: never featurized), images without ``event_time``
    (found by listing or backfill) and unparsable ones. A clock skew that puts the event after ``now`` counts 0.
    """
    seconds = []
    for image in images:
        event_time = image.get("event_time")
        if image.get("fate") or not isinstance(event_time, str):
            continue
        try:
            age = age_seconds(event_time, now)
        except ValueError:
            continue
        seconds.append(round(max(0.0, age), 3))
    return seconds


def seal_reason(pending: int, oldest_age_seconds: float | None, *, threshold: int, max_wait_seconds: int) -> str | None:
    """Why pending images should be sealed now, if at all: count or age, whichever comes first.

    ``"threshold"`` when ``pending >= threshold``; ``"max_wait"`` when the oldest pending image has waited
    ``max_wait_seconds`` or more (``max_wait_seconds`` 0 = the age rule is off; ``oldest_age_seconds`` None = the
    oldest image is not visible yet); otherwise None. Same idea as Kinesis Data Firehose buffering hints
    (size or interval, whichever is reached first).
    """
    if pending <= 0:
        return None
    if pending >= threshold:
        return "threshold"
    if max_wait_seconds > 0 and oldest_age_seconds is not None and oldest_age_seconds >= max_wait_seconds:
        return "max_wait"
    return None


def _parse_utc(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
