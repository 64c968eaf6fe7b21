"""The `fruits` command line: every command registered, --help works, bad arguments are one line + exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from fruits.cli.main import build_parser, main

COMMANDS = ["demo", "featurize", "start-job", "status", "reconcile", "evaluate", "sql", "compact", "expire",
            "migrate-lake"]


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
        ["demo", "--arrival-rate", "0"],
        ["demo", "--arrival-rate", "inf"],
        ["demo", "--max-wait", "-1"],
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


def test_bare_fruits_prints_help_and_version_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN `fruits` runs with no command  THEN it prints the help (every command listed) and exits 0
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fruits") and all(command in out for command in COMMANDS)
    # AND --version prints the package version
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("fruits ")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_shows_defaults_without_rst(command: str, capsys) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert sub.description, command
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    defaults = [a for a in sub._actions if a.default not in (None, False, argparse.SUPPRESS) and a.help
                and a.option_strings and not isinstance(a.default, bool)]
    for action in defaults:
        assert f"(default: {action.default})" in " ".join(out.split()), (command, action.dest)


def test_command_table_names_the_module_that_registers_each_command() -> None:
    # GIVEN each command module registered alone
    from fruits.cli import main as cli_main

    for module in cli_main.COMMAND_MODULES:
        parser = build_parser((module,))
        sub = next(a for a in parser._actions if a.dest == "command")
        # THEN the table sends exactly its commands to it
        assert {c for c, m in cli_main.COMMANDS.items() if m == module} == set(sub.choices), module
    # AND every module of the table is a registered command module
    assert set(cli_main.COMMANDS.values()) == set(cli_main.COMMAND_MODULES)
