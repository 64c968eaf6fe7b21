"""Choosing, naming and splitting the demo photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from fruits.local.demo import LAKE_MARKER, prepare_lake
from fruits.local.images import list_images, object_key, split_waves


def test_limit_spreads_over_every_class(sample_dir: Path) -> None:
    # GIVEN the 24-class Training folder WHEN 48 photos are asked for
    photos = list_images(sample_dir / "Training", limit=48)
    # THEN every class appears twice
    classes = [p.parent.name for p in photos]
    assert len(photos) == 48
    assert len(set(classes)) == 24
    assert all(classes.count(c) == 2 for c in set(classes))


def test_list_images_without_limit_returns_all_sorted(sample_dir: Path) -> None:
    photos = list_images(sample_dir / "Training")
    assert len(photos) == 3600
    assert photos == sorted(photos)


def test_list_images_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path)


def test_object_key_keeps_split_and_label(tmp_path: Path) -> None:
    root = tmp_path / "Training"
    assert object_key(root, root / "Apple Braeburn" / "0_100.jpg") == "images/Training/Apple Braeburn/0_100.jpg"


@pytest.mark.parametrize(("n", "waves", "sizes"), [(10, 3, [4, 3, 3]), (2, 5, [1, 1]), (7, 1, [7])])
def test_split_waves_is_contiguous_and_complete(n: int, waves: int, sizes: list[int]) -> None:
    items = [Path(str(i)) for i in range(n)]
    parts = split_waves(items, waves)
    assert [len(p) for p in parts] == sizes
    assert [x for part in parts for x in part] == items


def test_prepare_lake_refuses_foreign_data_and_recycles_its_own(tmp_path: Path) -> None:
    # GIVEN a directory with someone else's file
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.parquet").write_text("precious")
    # THEN the demo refuses it and leaves the file
    with pytest.raises(FileExistsError, match="not made by `fruits demo`"):
        prepare_lake(foreign)
    assert (foreign / "keep.parquet").exists()
    # GIVEN a lake from an earlier demo THEN it is emptied and marked again
    lake = prepare_lake(tmp_path / "lake")
    (lake / "features").mkdir()
    again = prepare_lake(lake)
    assert sorted(p.name for p in again.iterdir()) == [LAKE_MARKER]
