"""``fruits backfill``: paged, resumable recording of the bucket's objects; one-line errors for bad arguments."""

from __future__ import annotations

from typing import Any

import pytest

from fruits.cli.main import main
from tests.helpers.aws_fixtures import upload
from tests.helpers.manifest import scan, table


def test_backfill_stopped_by_max_pages_resumes_and_completes(moto_aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN 25 images under images/Test/Fig/ and 5 under images/Test/Lime/, never notified
    upload([f"images/Test/Fig/{i:02d}.jpg" for i in range(25)] + [f"images/Test/Lime/{i}.jpg" for i in range(5)])

    # WHEN the operator backfills the Fig prefix 10 keys a page, stopping after 2 pages
    assert main(["backfill", "--prefix", "images/Test/Fig/", "--page-size", "10", "--max-pages", "2"]) == 0
    out = capsys.readouterr().out

    # THEN 20 are recorded and the position is kept
    assert "listed 20 objects in 2 pages, recorded 20 missing images" in out and "run again to resume" in out
    assert table().cursor("images/Test/Fig/").listed == 20  # type: ignore[union-attr]

    # WHEN it runs again
    assert main(["backfill", "--prefix", "images/Test/Fig/", "--page-size", "10"]) == 0
    captured = capsys.readouterr()

    # THEN it resumes: the last 5 are recorded, the pass is complete, Lime untouched, each image once
    assert "resuming the pass over images/Test/Fig/" in captured.err
    assert "listed 5 objects in 1 pages, recorded 5 missing images" in captured.out and "pass complete" in captured.out
    keys = [item["key"] for item in scan("image")]
    assert len(keys) == 25 == len(set(keys)) and all(key.startswith("images/Test/Fig/") for key in keys)
    assert table().cursor("images/Test/Fig/") is None

    # WHEN a new pass is forced over everything
    assert main(["backfill", "--restart"]) == 0

    # THEN only the 5 Lime images are new
    assert "listed 30 objects in 1 pages, recorded 5 missing images" in capsys.readouterr().out


def test_prefix_outside_the_images_prefix_is_one_line(moto_aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--prefix", "manifests/"]) == 1
    err = capsys.readouterr().err
    assert err == "fruits backfill: error: prefix 'manifests/' is outside the images prefix 'images/'\n"
    assert moto_aws.named("ListObjectsV2") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "--page-size", "0"],
        ["backfill", "--page-size", "1001"],
        ["backfill", "--max-pages", "-1"],
        ["backfill", "--max-pages", "x"],
        ["backfill", "--region", "paris"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "error:" in err
