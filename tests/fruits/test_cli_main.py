"""The `fruits` command line: every command registered, --help works, bad arguments are one line + exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fruits.cli.main import build_parser, main

COMMANDS = ["demo", "featurize", "start-job", "status", "reconcile", "evaluate"]


def test_every_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_zero(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: fruits" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--threshold", "0"],
        ["demo", "--waves", "many"],
        ["demo", "--images", "/no/such/folder"],
        ["demo", "--weights", "bogus"],
        ["demo", "--weights", "random:x"],
        ["no-such-command"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fruits")
    assert "error:" in err
    assert "Traceback" not in err


def test_console_script_runs_without_traceback() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "fruits.cli.main", "demo", "--limit", "-3"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0
    assert "positive integer" in completed.stderr
