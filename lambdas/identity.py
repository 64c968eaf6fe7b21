"""Identity of an image in the manifest table: item keys, ETag normal form, S3 sequencer order.

Pure functions with no dependency, shared by ``lambdas.logic`` and ``lambdas.dal`` (so the DAL imports no logic).
"""

from __future__ import annotations

import hashlib

from lambdas.contracts import sequencer_text


def normalize_etag(etag: str | None) -> str:
    """Strip the quotes ``ListObjectsV2``/``HeadObject`` put around an ETag; ``""`` for None."""
    return (etag or "").strip().strip('"')


def image_item_key(bucket: str, key: str, etag: str) -> tuple[str, str]:
    """DynamoDB (pk, sk) of an image: identity = bucket + key + ETag (same bytes re-sent = same image).

    The version id is not part of the identity: a new version with identical content is the same image, and
    ``reconcile`` (which lists objects without versions) must compute the same key as the S3 notification.
    """
    return image_key_pk(bucket, key), f"ETAG#{normalize_etag(etag)}"


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
