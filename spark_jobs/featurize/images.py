"""Read image bytes and decode them with Pillow into fixed-size RGB pixels, or a reject reason.

Pure functions (:func:`decode_image`, :func:`fetch_bytes`) plus the Spark transform :func:`load_images`.
Reject reasons: ``unreadable`` (object missing / I/O error), ``empty`` (0 bytes), ``too_large`` (more than
``MAX_IMAGE_BYTES`` bytes or ``MAX_IMAGE_PIXELS`` pixels: decompression-bomb guard), ``not_an_image``
(Pillow cannot identify the format), ``truncated`` (data ends early), ``corrupt`` (any other decode error).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from spark_jobs import storage

# 64 Mpx covers every phone camera (4032x3024 = 12.2 Mpx, 8000x6000 = 48 Mpx); above it -> too_large.
# Pillow raises DecompressionBombError above 2x its own limit; we reject at 1x, before pixels are allocated.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
WHITE = (255, 255, 255)
# EXIF Orientation tag (0x0112) values 5-8 rotate by 90/270 degrees: width and height swap.
_TRANSPOSED = {5, 6, 7, 8}

DECODED_SCHEMA = T.StructType(
    [
        T.StructField("image_uri", T.StringType(), False),
        T.StructField("label", T.StringType(), True),
        T.StructField("content_sha256", T.StringType(), True),
        T.StructField("width", T.IntegerType(), True),
        T.StructField("height", T.IntegerType(), True),
        T.StructField("pixels", T.BinaryType(), True),
        T.StructField("reason", T.StringType(), True),
    ]
)


@dataclass(frozen=True)
class Decoded:
    """Result of :func:`decode_image`: ``pixels`` = uint8 RGB bytes (size*size*3, row-major HWC) or a reason."""

    width: int | None = None
    height: int | None = None
    pixels: bytes | None = None
    reason: str | None = None


def fetch_bytes(uri: str, version_id: str | None = None) -> bytes:
    """Bytes of an image at an ``s3://`` / ``file://`` URI or absolute path (see :mod:`spark_jobs.storage`);
    with ``version_id`` (the manifest's), exactly that S3 object version, so a batch featurizes what it recorded."""
    return storage.read_bytes(uri, version_id)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparent images (RGBA, LA, PA, P/L with transparency) are laid on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bit first
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def decode_image(data: bytes, size: int = 224) -> Decoded:
    """Decode image bytes into ``size`` x ``size`` RGB pixels (uint8), bounded memory.

    JPEGs are decoded with ``Image.draft`` (DCT scaling, e.g. 4032x3024 -> 504x378) so a phone photo never
    materialises at full resolution; EXIF orientation is applied (``ImageOps.exif_transpose``); the image is
    then resized (bilinear, aspect ratio not kept, whole photo visible) to the model input.

    Returns:
        ``Decoded`` with the original width/height in pixels (after EXIF orientation) and the pixels, or
        with ``reason`` set (module doc) when the image cannot be used. Never raises for bad data.
    """
    if not data:
        return Decoded(reason="empty")
    if len(data) > MAX_IMAGE_BYTES:
        return Decoded(reason="too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                return Decoded(reason="too_large")
            if img.getexif().get(0x0112) in _TRANSPOSED:
                width, height = height, width
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # keeps >= size on each side
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
            return Decoded(width=width, height=height, pixels=rgb.tobytes())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Decoded(reason="too_large")
    except UnidentifiedImageError:
        return Decoded(reason="not_an_image")
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # Pillow's decode errors
        text = str(err).lower()
        return Decoded(reason="truncated" if "truncat" in text or isinstance(err, EOFError) else "corrupt")


def fetch_decode(
    uri: str, size: int = 224, version_id: str | None = None
) -> tuple[str | None, int | None, int | None, bytes | None, str | None]:
    """Fetch and decode one image: ``(content_sha256, width, height, pixels, reason)`` (see :func:`decode_image`).

    A fetch failure (missing object, permissions, network) gives reason ``unreadable``; never raises.
    """
    try:
        data = fetch_bytes(uri, version_id)
    except Exception:  # missing object, permissions, network: reject, batch goes on
        return None, None, None, None, "unreadable"
    out = decode_image(data, size)
    return hashlib.sha256(data).hexdigest(), out.width, out.height, out.pixels, out.reason


def _decode_partition(size: int):
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            rows = [(uri, label, *fetch_decode(uri, size))
                    for uri, label in zip(frame["image_uri"], frame["label"], strict=True)]
            yield pd.DataFrame(rows, columns=DECODED_SCHEMA.fieldNames()).astype(
                {"width": "Int32", "height": "Int32"}
            )

    return run


def load_images(manifest: DataFrame, size: int = 224) -> DataFrame:
    """Manifest rows (``image_uri``, ``label``) -> :data:`DECODED_SCHEMA` rows, one per image, on the executors.

    ``pixels`` is ``size*size*3`` uint8 RGB bytes when the image decoded, else null and ``reason`` is set.
    """
    return manifest.select("image_uri", "label").mapInPandas(_decode_partition(size), DECODED_SCHEMA)
