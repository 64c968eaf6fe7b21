"""``fruits featurize``: one-line errors for bad arguments, a deterministic batch id, a real local run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fruits.cli import featurize
from fruits.cli.errors import CliError
from fruits.cli.main import OneLineParser
from lambdas.logic.batches import BATCH_ID_RE

from .conftest import copy_subset


def parser() -> OneLineParser:
    root = OneLineParser(prog="fruits")
    featurize.register(root.add_subparsers(dest="command", parser_class=OneLineParser))
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["featurize", "--lake", "x"],  # neither --images nor --manifest
        ["featurize", "--images", "/definitely/not/here", "--lake", "x"],
        ["featurize", "--images", ".", "--manifest", "pyproject.toml", "--lake", "x"],
        ["featurize", "--images", ".", "--lake", "x", "--pca-k", "0"],
        ["featurize", "--images", ".", "--lake", "x", "--limit", "many"],
        ["featurize", "--images", ".", "--lake", "x", "--batch-id", "../up"],
        ["featurize", "--images", ".", "--lake", "x", "--weights", "random:minus1"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv: list[str], capsys) -> None:
    # GIVEN a bad command line  WHEN parsed  THEN exit code 2 and a single error line, no traceback
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err


def test_manifest_from_images_labels_by_folder_and_batch_id_is_deterministic(sample_dir: Path, tmp_path) -> None:
    # GIVEN a folder of class sub-folders
    copy_subset(sample_dir, tmp_path, ["Lemon", "Limes"], per_class=3)
    (tmp_path / "notes.txt").write_text("not an image suffix")
    # WHEN its manifest is built twice
    first = featurize.manifest_from_images(tmp_path)
    second = featurize.manifest_from_images(tmp_path)
    # THEN labels are the parent folders, non-images are skipped, and the default batch id is stable
    assert {r["label"] for r in first} == {"Lemon", "Limes"} and len(first) == 6
    assert all(Path(r["image_uri"]).is_absolute() for r in first)
    bid = featurize.default_batch_id(featurize.manifest_bytes(first))
    assert bid == featurize.default_batch_id(featurize.manifest_bytes(second))
    assert bid != featurize.default_batch_id(featurize.manifest_bytes(first[:5]))
    assert BATCH_ID_RE.match(bid)
    assert len(featurize.manifest_from_images(tmp_path, limit=2)) == 2


def test_malformed_manifest_or_empty_folder_is_a_cli_error(tmp_path) -> None:
    # GIVEN a manifest with a bad line / a folder without images
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_uri": "/a.jpg"}\nnot json\n')
    (tmp_path / "empty").mkdir()
    # WHEN the command runs  THEN a CliError with a one-line message, nothing else happens
    with pytest.raises(CliError, match=r"bad\.jsonl:2"):
        featurize.run(parser().parse_args(["featurize", "--manifest", str(bad), "--lake", str(tmp_path / "l")]))
    with pytest.raises(CliError, match="no images"):
        featurize.run(parser().parse_args(["featurize", "--images", str(tmp_path / "empty"),
                                           "--lake", str(tmp_path / "l")]))


def test_int8_needs_a_calibration_source_and_only_int8_takes_one(tmp_path) -> None:
    # GIVEN a manifest of one image (no photo folder to calibrate on)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image_uri": "/a.jpg"}\n')
    base = ["featurize", "--manifest", str(manifest), "--lake", str(tmp_path / "l")]
    # WHEN int8 is asked without --calibration, or --calibration without int8 THEN a CliError exiting 2, nothing run
    with pytest.raises(CliError, match="needs --calibration") as exc:
        featurize.run(parser().parse_args([*base, "--precision", "int8"]))
    assert exc.value.exit_code == 2
    with pytest.raises(CliError, match="int8 only"):
        featurize.run(parser().parse_args([*base, "--calibration", str(tmp_path)]))
    assert not (tmp_path / "l").exists()
