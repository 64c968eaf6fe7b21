"""Pillow decoding of odd and corrupt files (no Spark): reasons, modes, EXIF, big photos, bombs."""

from __future__ import annotations

import numpy as np
import pytest

from spark_jobs.featurize.images import decode_image

EXPECTED_REASONS = {
    "truncated": "truncated",
    "empty": "empty",
    "text": "not_an_image",
    "bomb": "too_large",
}


@pytest.mark.parametrize(("case", "reason"), sorted(EXPECTED_REASONS.items()))
def test_bad_files_get_a_reason_instead_of_an_exception(odd_files, case: str, reason: str) -> None:
    # GIVEN a corrupt/odd file  WHEN decoded  THEN no pixels and the expected reject reason
    out = decode_image(odd_files[case].read_bytes())
    assert out.pixels is None
    assert out.reason == reason


@pytest.mark.parametrize("case", ["rgba", "cmyk", "gray", "palette", "gray16", "big", "rotated"])
def test_any_mode_decodes_to_224_rgb(odd_files, case: str) -> None:
    # GIVEN an image in an unusual mode or size  WHEN decoded  THEN 224x224x3 uint8 pixels, no reason
    out = decode_image(odd_files[case].read_bytes(), size=224)
    assert out.reason is None
    assert out.pixels is not None and len(out.pixels) == 224 * 224 * 3
    assert np.frombuffer(out.pixels, dtype=np.uint8).std() > 1.0  # a real picture, not a blank


def test_transparent_pixels_are_white_and_sizes_are_original_after_exif(odd_files) -> None:
    # GIVEN an RGBA PNG fully transparent on its top row, and phone photos with/without EXIF rotation
    rgba = decode_image(odd_files["rgba"].read_bytes(), size=64)
    big = decode_image(odd_files["big"].read_bytes())
    rotated = decode_image(odd_files["rotated"].read_bytes())
    # THEN transparency is laid on white
    top_row = np.frombuffer(rgba.pixels, dtype=np.uint8).reshape(64, 64, 3)[0]
    assert top_row.min() >= 250
    # AND width/height are the original size as displayed (EXIF orientation 6 swaps them)
    assert (big.width, big.height) == (4032, 3024)
    assert (rotated.width, rotated.height) == (3024, 4032)
    # AND the rotated photo's pixels are the landscape one turned by 90 degrees
    a = np.frombuffer(big.pixels, dtype=np.uint8).reshape(224, 224, 3).astype(float)
    b = np.frombuffer(rotated.pixels, dtype=np.uint8).reshape(224, 224, 3).astype(float)
    assert np.abs(np.rot90(a, k=-1) - b).mean() < np.abs(a - b).mean()


def test_real_fruits_360_photo_decodes(sample_dir) -> None:
    # GIVEN a real 100x100 Fruits-360 JPEG  WHEN decoded  THEN original size 100x100 and pixels
    path = sorted((sample_dir / "Training" / "Apricot").glob("*.jpg"))[0]
    out = decode_image(path.read_bytes())
    assert (out.width, out.height, out.reason) == (100, 100, None)
