"""bench.sustained: sizes are checked before any job runs (the measurement itself is a benchmark, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import sustained
from bench.run_all import NAMES


def test_sizes_that_do_not_split_into_whole_batches_are_refused(tmp_path: Path) -> None:
    # GIVEN photo and batch counts that cannot make whole batches WHEN run THEN a ValueError names both, nothing runs
    for photos, batch in ((1000, 300), (0, 100), (100, 0)):
        with pytest.raises(ValueError, match="positive multiple"):
            sustained.run(tmp_path, photos=photos, batch=batch)
    assert not any(tmp_path.iterdir())


def test_the_cli_turns_bad_sizes_into_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN --photos not a multiple of --batch WHEN the CLI runs THEN exit 2 with a one-line message
    with pytest.raises(SystemExit) as exc:
        sustained.main(["--photos", "10", "--batch", "3"])
    assert exc.value.code == 2 and "positive multiple" in capsys.readouterr().err
    # AND make bench runs it after the engines benchmark
    assert NAMES.index("sustained") == NAMES.index("engines") + 1
