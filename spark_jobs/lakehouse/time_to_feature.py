"""Time-to-feature: seconds from an image's S3 event (its upload) to the commit of its feature vector."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np


def summarize_seconds(seconds: Iterable[float]) -> dict[str, Any]:
    """``{"images", "p50", "p95", "max"}`` of durations in seconds (rounded to 1 ms; None when there is none).

    Percentiles: ``numpy.percentile`` with linear interpolation (its default).
    """
    values = np.fromiter(seconds, dtype=np.float64)
    if not values.size:
        return {"images": 0, "p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"images": int(values.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "max": round(float(values.max()), 3)}


def time_to_feature(event_times: Iterable[dt.datetime | None], committed_at: dt.datetime) -> dict[str, Any]:
    """Seconds from each image's S3 event to the batch's commit: ``{"images", "p50", "p95", "max"}``.

    ``images`` counts the event times given (None ones are skipped: found by listing, no event); the statistics
    are None when there is none (:func:`summarize_seconds`).
    """
    return summarize_seconds((committed_at - t).total_seconds() for t in event_times if t is not None)
