"""argparse ``type=`` helpers that turn bad values into one-line errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from lambdas.contracts import check_batch_id
from lambdas.resources import JOB_ENGINES, JOB_PRECISIONS


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` that parses an integer in ``low..high`` (``high`` None: no upper bound); anything else
    raises ``argparse.ArgumentTypeError`` (a one-line usage error)."""
    if high is not None:
        expected = f"an integer {low}..{high}"
    else:
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = bounded_int(1)
positive_int.__doc__ = "Parse a strictly positive integer; raises ``argparse.ArgumentTypeError`` otherwise."
non_negative_int = bounded_int(0)
non_negative_int.__doc__ = "Parse an integer >= 0; raises ``argparse.ArgumentTypeError`` otherwise."


def positive_float(text: str) -> float:
    """Parse a finite number > 0; raises ``argparse.ArgumentTypeError`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def valid_batch_id(text: str) -> str:
    """Parse a batch id (docs/contracts.md "Batch id", ``lambdas.contracts.BATCH_ID_RE``); one-line error."""
    try:
        return check_batch_id(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine tensorflow|openvino|onnxruntime`` (the job's inference engine; default: its architecture's)."""
    parser.add_argument("--engine", choices=JOB_ENGINES, default="",
                        help="inference engine of the job (default for this architecture: openvino on x86_64, "
                             "onnxruntime on arm64)")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--precision float32|bfloat16|int8`` (the Spark job's opt-in reduced precisions; default float32) and
    ``--calibration`` (int8's calibration source)."""
    parser.add_argument("--precision", choices=JOB_PRECISIONS, default=JOB_PRECISIONS[0],
                        help="bfloat16: opt-in mixed precision, faster on CPUs with bf16 (model_id suffix -bf16); "
                             "int8: opt-in post-training quantization, 2.9x the f32 job on a 2-core VNNI+AMX Xeon "
                             "(CPUs with int8 dot products: VNNI/AMX, Graviton) at a mean cosine to the f32 features "
                             ">= 0.999 (checked "
                             "by a fidelity gate on held-back photos before every batch; model_id suffix "
                             "-int8-<calibration hash8>)")
    parser.add_argument("--calibration", default=None, metavar="FOLDER|MANIFEST",
                        help="int8: calibration photos, a folder (label = parent folder) or a calibration manifest; "
                             "300 calibrate, 100 more are held back for the fidelity gate (default: the --images "
                             "folder)")


def existing_dir(text: str) -> Path:
    """Parse a path that must be an existing directory."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text}")
    return path


def lake_location(text: str) -> str:
    """An ``s3://bucket/prefix`` lake URI, or an existing local lake directory (as a string)."""
    if text.startswith("s3://"):
        if len(text) <= len("s3://") or text[len("s3://") :].startswith("/"):
            raise argparse.ArgumentTypeError(f"not an s3://bucket/prefix URI: {text}")
        return text.rstrip("/")
    return str(existing_dir(text))


def existing_file(text: str) -> Path:
    """Parse a path that must be an existing file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text}")
    return path


def weights_source(text: str) -> str:
    """Validate ``--weights``: ``imagenet``, ``random``, ``random:SEED``, an ``s3://`` URI or an existing file."""
    if text in ("imagenet", "random") or text.startswith("s3://"):
        return text
    if text.startswith("random:"):
        seed = text.partition(":")[2]
        if not seed.isdigit():
            raise argparse.ArgumentTypeError(f"random seed must be a non-negative integer, got {seed!r}")
        return text
    if Path(text).expanduser().is_file():
        return str(Path(text).expanduser().resolve())
    raise argparse.ArgumentTypeError(
        f"expected imagenet, random[:SEED], s3://… or an existing weights file, got {text!r}"
    )
