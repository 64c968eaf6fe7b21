"""Identity of an image in the manifest table: item keys, ETag normal form, version stamps (S3 version order).

Pure functions with no dependency, shared by ``lambdas.logic`` and ``lambdas.dal`` (so the DAL imports no logic).
The identity of a photo is its S3 object **version** (docs/contracts.md "Version order" and "DynamoDB manifest
table"): the sort key of an image item names the version, never only its bytes, so re-uploading earlier bytes
(A → B → A) or deleting then re-uploading the same bytes is a new version, while the same S3 event delivered
twice, or the same version listed again, finds the same item.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from lambdas.contracts import VersionStamp, sequencer_text

LEGACY_SK_PREFIX = "ETAG#"  # items written before issue 18 (identity bucket + key + ETag); still read


def normalize_etag(etag: str | None) -> str:
    """Strip the quotes ``ListObjectsV2``/``HeadObject`` put around an ETag; ``""`` for None."""
    return (etag or "").strip().strip('"')


def normalize_version_id(version_id: str | None) -> str | None:
    """An S3 version id, or None for no version (absent, empty, or ``"null"``: S3's id of an object written while
    the bucket was unversioned)."""
    return version_id if version_id and version_id != "null" else None


def version_sk(
    etag: str, *, version_id: str | None = None, sequencer: str | None = None, last_modified: str | None = None
) -> str:
    """Sort key of one S3 object version's image item.

    * ``VER#<version id>`` on a versioned bucket (the deployed one): exact, whatever path saw the version;
    * else ``SEQ#<padded sequencer>#<etag>`` for a version seen through its S3 event (unversioned bucket);
    * else ``ETAG#<etag>#<LastModified>`` for a version found by listing an unversioned bucket;
    * else ``ETAG#<etag>`` (nothing else known: the pre-issue-18 identity, also the legacy items' shape).
    """
    etag = normalize_etag(etag)
    version_id = normalize_version_id(version_id)
    if version_id:
        return f"VER#{version_id}"
    if sequencer:
        return f"SEQ#{sequencer_text(sequencer)}#{etag}"
    if last_modified:
        return f"{LEGACY_SK_PREFIX}{etag}#{last_modified}"
    return f"{LEGACY_SK_PREFIX}{etag}"


def legacy_sk(etag: str) -> str:
    """Sort key an image item of this ETag had before issue 18 (``ETAG#<etag>``), for the compatibility read."""
    return f"{LEGACY_SK_PREFIX}{normalize_etag(etag)}"


def image_item_key(
    bucket: str,
    key: str,
    etag: str,
    *,
    version_id: str | None = None,
    sequencer: str | None = None,
    last_modified: str | None = None,
) -> tuple[str, str]:
    """DynamoDB (pk, sk) of one S3 object version: the key's partition, :func:`version_sk` within it."""
    return image_key_pk(bucket, key), version_sk(
        etag, version_id=version_id, sequencer=sequencer, last_modified=last_modified
    )


def item_stamp(item: Mapping[str, Any]) -> VersionStamp:
    """The :class:`lambdas.contracts.VersionStamp` of an image item, a key's ``HEAD`` item or an erasure item:
    its ``sequencer``, its ``event_time`` (else ``last_modified``, else ``time``), its ``version_id``."""
    time = item.get("event_time") or item.get("last_modified") or item.get("time")
    return VersionStamp(item.get("sequencer") or None, time or None, normalize_version_id(item.get("version_id")))


# A listed object (ListObjectsV2: no version id) is taken for the key's live version recorded from its event when
# it has the same ETag and its LastModified is within this many seconds of that event's eventTime.
LISTING_SKEW_SECONDS = 2.0


def same_listed_version(head: Mapping[str, Any] | None, etag: str, last_modified: str | None) -> bool:
    """True when a listed object (``etag``, ``last_modified`` ISO-8601 UTC) is the live version the key's HEAD
    holds: same ETag, times within :data:`LISTING_SKEW_SECONDS`. Bytes equal to the live version but written
    later (a re-upload whose event was lost) are a new version."""
    if head is None or not head.get("current_sk") or normalize_etag(head.get("etag")) != normalize_etag(etag):
        return False
    try:
        apart = abs((_utc(head.get("time")) - _utc(last_modified)).total_seconds())
    except (TypeError, ValueError):
        return False
    return apart <= LISTING_SKEW_SECONDS


def _utc(text: Any) -> dt.datetime:
    """ISO-8601 text (``Z`` or an offset; naive = UTC) → aware datetime; TypeError / ValueError if not one."""
    parsed = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    if parsed is None:
        raise ValueError("no time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def short_hash(*parts: str, length: int = 16) -> str:
    """First ``length`` hex digits of SHA-256 over ``parts`` joined by NUL (stable sort-key suffix)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def sequencer_key(sequencer: str | None) -> str | None:
    """A sequencer made comparable as text: upper-case hex left-padded with ``0`` to
    :data:`lambdas.contracts.SEQUENCER_WIDTH` (AWS S3 "Event message structure"); None stays None (no event,
    e.g. a listed object)."""
    return sequencer_text(sequencer) if sequencer else None


def image_key_pk(bucket: str, key: str) -> str:
    """Partition key shared by every recorded version of one S3 key (and its ``HEAD`` item)."""
    return f"IMAGE#s3://{bucket}/{key}"
