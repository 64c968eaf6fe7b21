"""Contracts shared by the two deployed packages: the Lambdas (``lambdas``) and the Spark job (``spark_jobs``).

This module ships in BOTH assets: the Lambda asset is the whole ``lambdas`` package, and the Spark code zip
(``spark_jobs.packaging.spark_package_zip``) carries ``lambdas/__init__.py`` + this file next to ``spark_jobs/``.
It imports
nothing but the standard library, so the Spark job can import it without the Lambdas' dependencies.
Each value is written here once (docs/contracts.md, "Batch id", "Metrics", "Lambda environment").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Batch id: a partition value in the lake and a path segment of the manifest URI (docs/contracts.md "Batch id").
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The Spark job's --precision choices; the first is the default (bfloat16: opt-in, model_id suffix -bf16; int8:
# opt-in post-training quantization, model_id suffix -int8-<calibration hash8>, needs --calibration).
JOB_PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
DEFAULT_JOB_PRECISION = JOB_PRECISIONS[0]

# Powertools service name (the metrics' ``service`` dimension) and CloudWatch metrics namespace.
SERVICE_NAME = "fruits-ingestion"
METRICS_NAMESPACE = "Fruits"


def check_batch_id(text: str) -> str:
    """Return ``text`` if it is a valid batch id (:data:`BATCH_ID_RE`); raises ValueError naming the rule."""
    if not BATCH_ID_RE.match(text):
        raise ValueError(f"batch id must match {BATCH_ID_RE.pattern}, got {text!r}")
    return text


# --- Version order (issue 18): which S3 object version of a key is the newest -------------------------------------
SEQUENCER_WIDTH = 64


@dataclass(frozen=True)
class VersionStamp:
    """Where one S3 object version (or a delete of the key) stands among the events of its key.

    Attributes:
        sequencer: the S3 event's hex ``sequencer`` (None when the version was found by listing: reconcile,
            backfill).
        time: ISO-8601 UTC text of the S3 event's ``eventTime``, or of the listing's ``LastModified`` when there
            is no event (None when unknown).
        version_id: the S3 version id (None on an unversioned bucket or a local file).
    """

    sequencer: str | None = None
    time: str | None = None
    version_id: str | None = None


def sequencer_text(sequencer: str) -> str:
    """Upper-case hex left-padded with ``0`` (AWS S3 "Event message structure": pad the shorter, then compare)."""
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


def _second(time: str | None) -> str:
    """The ISO-8601 UTC ``time`` cut to whole seconds (``YYYY-MM-DDTHH:MM:SS``); ``""`` for None.

    ListObjectVersions gives ``LastModified`` in whole seconds while event times carry milliseconds, so times are
    compared at the resolution both have.
    """
    return (time or "")[:19]


def is_newer(a: VersionStamp, b: VersionStamp) -> bool:
    """True when ``a`` is a strictly later event of the key than ``b`` (docs/contracts.md "Version order").

    The rule, in order:
    1. both carry a sequencer: the greater sequencer is later (equal: the same event, not newer);
    2. otherwise their times at whole seconds: the later second is later;
    3. same second: the one with a sequencer is later than one found by listing (an event is the more precise
       witness); then the greater ``version_id`` (deterministic; S3 gives no order between two listed versions
       of one second).
    So a late event of an older version never wins over a version found later by listing, whose
    ``LastModified`` is after that event's time.
    """
    if a.sequencer and b.sequencer:
        return sequencer_text(a.sequencer) > sequencer_text(b.sequencer)
    sa, sb = _second(a.time), _second(b.time)
    if sa != sb:
        return sa > sb
    if bool(a.sequencer) != bool(b.sequencer):
        return bool(a.sequencer)
    return (a.version_id or "") > (b.version_id or "")
