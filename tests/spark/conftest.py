"""Helpers for the Spark job tests: small real-photo subsets, odd/corrupt files, manifests."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Cheap deterministic featurizer (spark_jobs.featurize.models "projection") for the PCA/lake tests; the real
# ResNet50 runs in test_resnet_e2e.py and test_cli_featurize.py.
FAST_WEIGHTS = "projection:7"


def write_manifest(path: Path, images: list[Path | str]) -> str:
    """JSON-lines manifest (contract shape) of local images; label = parent folder. Returns the path."""
    lines = []
    for image in images:
        p = Path(image)
        lines.append(json.dumps({"image_uri": str(p), "bucket": None, "key": None, "version_id": None,
                                 "etag": None, "size": p.stat().st_size if p.exists() else None,
                                 "label": p.parent.name}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def copy_subset(sample_dir: Path, dest: Path, classes: list[str], per_class: int, offset: int = 0) -> list[Path]:
    """Copy ``per_class`` real Training photos of each class into ``dest/<class>/`` (sorted, from ``offset``)."""
    out = []
    for cls in classes:
        files = sorted((sample_dir / "Training" / cls).glob("*.jpg"))[offset : offset + per_class]
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            target = dest / cls / f.name
            shutil.copyfile(f, target)
            out.append(target)
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def make_odd_files(sample_dir: Path, dest: Path) -> dict[str, Path]:
    """Odd and corrupt files built at test time in ``dest/odd/``; keys name the case."""
    odd = dest / "odd"
    odd.mkdir(parents=True, exist_ok=True)
    real = sorted((sample_dir / "Training" / "Banana").glob("*.jpg"))[0]
    data = real.read_bytes()
    files = {name: odd / fname for name, fname in {
        "truncated": "truncated.jpg", "empty": "empty.jpg", "text": "text.jpg", "bomb": "bomb.png",
        "rgba": "rgba.png", "cmyk": "cmyk.jpg", "gray": "gray.jpg", "palette": "palette.png",
        "gray16": "gray16.png", "big": "big_4032x3024.jpg", "rotated": "rotated_exif6.jpg",
    }.items()}
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image, just text with a .jpg name\n")
    files["bomb"].write_bytes(bomb_png())
    with Image.open(real) as img:
        rgba = img.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))  # alpha 0 at the top row
        rgba.save(files["rgba"])
        img.convert("CMYK").save(files["cmyk"], quality=90)
        img.convert("L").save(files["gray"], quality=90)
        img.convert("P", palette=Image.Palette.ADAPTIVE).save(files["palette"], transparency=0)
        Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 256).save(files["gray16"])
    with Image.open(sample_dir / "multiple_fruits" / "apple_grape.jpg") as phone:  # 3024x4032 real photo
        landscape = phone.transpose(Image.Transpose.ROTATE_90)  # 4032x3024
        landscape.save(files["big"], quality=85)
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees on display: stored 4032x3024, shown 3024x4032
        landscape.save(files["rotated"], quality=85, exif=exif)
    return files


@pytest.fixture(scope="session")
def odd_files(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The odd/corrupt files, built once per test session."""
    return make_odd_files(sample_dir, tmp_path_factory.mktemp("odd"))
