"""Entry point of the `fruits` console script (argparse).

Each command group lives in its own module exposing ``register(subparsers) -> None``; a registered
sub-parser sets ``func(args) -> int``. Bad arguments print one line ``fruits: error: …`` and exit 2;
a :class:`CliError` raised by a command prints one line and exits with its code (default 1). A bare ``fruits``
prints the help; every command's help shows its description and the defaults of its options.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from fruits.cli.errors import CliError

COMMAND_MODULES: tuple[str, ...] = (
    "fruits.cli.demo",  # fruits demo
    "fruits.cli.featurize",  # fruits featurize
    "fruits.cli.jobs",  # fruits start-job | status | reconcile
    "fruits.cli.backfill",  # fruits backfill
    "fruits.cli.evaluate",  # fruits evaluate
    "fruits.cli.report",  # fruits report
    "fruits.cli.lake",  # fruits sql | compact | expire | migrate-lake
    "fruits.cli.similar",  # fruits similar | duplicates
)
# The module registering each command: `fruits COMMAND ...` imports only that module (the others import boto3,
# the Lambda code, ... at load: ~0.35 s of CPU a command like `fruits similar` does not need). A test checks this
# table against what the modules register.
COMMANDS: dict[str, str] = {
    "demo": "fruits.cli.demo",
    "featurize": "fruits.cli.featurize",
    **dict.fromkeys(("start-job", "status", "reconcile"), "fruits.cli.jobs"),
    "backfill": "fruits.cli.backfill",
    "evaluate": "fruits.cli.evaluate",
    "report": "fruits.cli.report",
    **dict.fromkeys(("sql", "compact", "expire", "erase", "migrate-lake"), "fruits.cli.lake"),
    **dict.fromkeys(("similar", "duplicates"), "fruits.cli.similar"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option with a real default (not None/False) shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text
        if action.option_strings and shown:
            text += " (default: %(default)s)"
        return text


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit code 2 (no usage dump).

    Descriptions lose reStructuredText markup (double backticks become single ones) and default to the help text.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        description = kwargs.get("description")
        if description:
            kwargs["description"] = description.replace("``", "`").replace(":func:", "").replace(":mod:", "")
        elif kwargs.get("help"):
            kwargs["description"] = kwargs["help"]
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the root parser with the command groups of ``modules`` registered (default: every available one)."""
    parser = OneLineParser(prog="fruits", description="Fruits! image ingestion pipeline (local and AWS).")
    parser.add_argument("--version", action="version", version=f"fruits {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(name).register(subparsers)
    for action in subparsers._choices_actions:  # commands registered with help= only: it is their description
        command = subparsers.choices[action.dest]
        if not command.description:
            command.description = action.help
    return parser


def version() -> str:
    """The installed package version (``pyproject.toml``), or ``unknown`` when run from a bare checkout."""
    try:
        return importlib.metadata.version("fruits-ingestion")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code.

    When the first word of ``argv`` names a command, only the module registering it is imported (:data:`COMMANDS`).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    module = COMMANDS.get(first or "")
    parser = build_parser((module,) if module in COMMAND_MODULES else None)
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        sys.stderr.write(f"fruits {args.command}: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("fruits: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
