"""Entry point of the `fruits` console script (argparse).

Each command group lives in its own module exposing ``register(subparsers) -> None``; a registered
sub-parser sets ``func(args) -> int``. Bad arguments print one line ``fruits: error: …`` and exit 2;
a :class:`CliError` raised by a command prints one line and exits with its code (default 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fruits.cli.errors import CliError

COMMAND_MODULES: tuple[str, ...] = (
    "fruits.cli.demo",  # fruits demo
    "fruits.cli.featurize",  # fruits featurize
    "fruits.cli.jobs",  # fruits start-job | status | reconcile
    "fruits.cli.evaluate",  # fruits evaluate
    "fruits.cli.lake",  # fruits sql | compact | expire | migrate-lake
)


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """Build the root parser with every available command group registered."""
    parser = OneLineParser(prog="fruits", description="Fruits! image ingestion pipeline (local and AWS).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
