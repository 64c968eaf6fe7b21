"""S3 object keys → image identity, label, and the reason a key is not an image."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from lambdas import resources
from lambdas.contracts import VersionStamp
from lambdas.identity import image_item_key


@dataclass(frozen=True)
class ImageRef:
    """One S3 object version seen as an image.

    ``etag`` is stored without surrounding quotes (S3 notifications send it bare, ``ListObjectsV2`` quoted);
    ``size`` is in bytes; ``version_id`` is None for unversioned buckets. ``sequencer`` (hex string) and
    ``event_time`` (ISO-8601 UTC) come from the S3 event; None when the object was found by listing, which gives
    ``last_modified`` (ISO-8601 UTC of the listing's ``LastModified``) instead.
    """

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None
    last_modified: str | None = None

    @property
    def stamp(self) -> VersionStamp:
        """Where this version stands among the key's events (docs/contracts.md "Version order")."""
        return VersionStamp(self.sequencer or None, self.event_time or self.last_modified, self.version_id or None)

    @property
    def item_key(self) -> tuple[str, str]:
        """The (pk, sk) of this version's image item (:func:`lambdas.identity.image_item_key`)."""
        return image_item_key(
            self.bucket,
            self.key,
            self.etag,
            version_id=self.version_id,
            sequencer=self.sequencer,
            last_modified=self.last_modified,
        )

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` with the real (decoded) key."""
        return f"s3://{self.bucket}/{self.key}"


def decode_event_key(raw_key: str) -> str:
    """Decode an S3 notification key (URL-encoded, spaces as ``+``) into the real key: ``unquote_plus``."""
    return unquote_plus(raw_key)


def skip_reason(key: str, images_prefix: str, suffixes: tuple[str, ...] = resources.IMAGE_SUFFIXES) -> str | None:
    """Why ``key`` is not an image to ingest, or None when it is one.

    Reasons: ``outside_prefix`` (not under ``images_prefix``), ``folder_marker`` (ends with ``/``),
    ``not_an_image_suffix`` (lower-cased suffix not in ``suffixes``). An image directly under the prefix is
    ingested, with no label (:func:`label_for_key`).
    """
    if not key.startswith(images_prefix):
        return "outside_prefix"
    if key.endswith("/"):
        return "folder_marker"
    if not key.lower().endswith(suffixes):
        return "not_an_image_suffix"
    return None


def folder_label(path: str) -> str | None:
    """The label rule: the name of the folder directly containing the file at ``path``; None for a bare file name.

    ``path`` is ``/``-separated (a Windows ``\\`` counts as ``/``): ``Training/Apple Braeburn/0_100.jpg`` →
    ``Apple Braeburn``, ``s3://b/images/Test/Kiwi/3.jpg`` → ``Kiwi``, ``photo.jpg`` → None.
    """
    folders = path.replace("\\", "/").split("/")[:-1]
    return folders[-1] if folders and folders[-1] else None


def label_for_key(key: str, images_prefix: str) -> str | None:
    """Label of an image: the folder directly containing it, below ``images_prefix``; None when there is none.

    ``images/Training/Apple Braeburn/0_100.jpg`` → ``Apple Braeburn``; ``images/photo.jpg`` → None (an unlabelled
    photo is still featurized: lake ``label`` null). Raises ValueError if ``key`` is not under ``images_prefix``.
    """
    if not key.startswith(images_prefix):
        raise ValueError(f"key {key!r} is not under {images_prefix!r}")
    return folder_label(key[len(images_prefix) :])
