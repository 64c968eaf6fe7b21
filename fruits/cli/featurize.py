"""``fruits featurize``: run the Spark job in-process on local images or a manifest (no AWS needed).

    fruits featurize (--images DIR | --manifest FILE) --lake DIR [--batch-id ID] [--weights imagenet]
                     [--pca-k 150] [--precision float32|bfloat16|int8] [--calibration SOURCE] [--engine E]
                     [--limit N]

With ``--images`` a JSON-lines manifest of the image files under DIR is built (label = the folder directly
containing the image). Without ``--batch-id`` the id is derived from the manifest content
(``manual-<sha256[:16]>``), so featurizing the same input again is a re-run of the same batch, not a new one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

from fruits.cli.errors import CliError
from fruits.cli.types import (
    add_engine_argument,
    add_precision_argument,
    existing_dir,
    existing_file,
    positive_int,
    valid_batch_id,
    weights_source,
)
from fruits.local.images import image_files
from lambdas.logic.keys import folder_label


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``featurize`` command."""
    parser = subparsers.add_parser(
        "featurize",
        help="featurize local images into a lake with the Spark job (local Spark)",
        description=__doc__.splitlines()[0],
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=existing_dir, help="folder of images (label = parent folder name)")
    source.add_argument("--manifest", type=existing_file, help="JSON-lines batch manifest")
    parser.add_argument("--lake", required=True, help="lake root directory (created if missing) or s3:// URI")
    parser.add_argument("--batch-id", type=valid_batch_id, help="default: derived from the manifest content")
    parser.add_argument("--weights", type=weights_source, default="imagenet",
                        help="imagenet (falls back to random:0 offline, loudly), random[:SEED], a file or s3://")
    parser.add_argument("--pca-k", type=positive_int, default=150, help="PCA components kept")
    add_precision_argument(parser)
    add_engine_argument(parser)
    parser.add_argument("--limit", type=positive_int, help="featurize at most N images")
    parser.add_argument("--catalog", default=None,
                        help="Iceberg catalog: sql:PATH | glue[:DATABASE] (default: sql:<lake>/catalog.db)")
    parser.set_defaults(func=run)


def manifest_from_images(root: Path, limit: int | None = None) -> list[dict]:
    """Manifest records for the image files under ``root`` (sorted paths; suffixes from lambdas.resources)."""
    records = [
        {"image_uri": str(p.resolve()), "bucket": None, "key": None, "version_id": None, "etag": None,
         "size": p.stat().st_size, "label": folder_label(p.as_posix())}
        for p in image_files(root)
    ]
    return records[:limit] if limit else records


def manifest_from_file(path: Path, limit: int | None = None) -> list[dict]:
    """Records of a JSON-lines manifest file. Raises CliError on a malformed line."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CliError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image_uri"), str):
            raise CliError(f"{path}:{number}: expected an object with a string image_uri")
        records.append(record)
    return records[:limit] if limit else records


def manifest_bytes(records: list[dict]) -> bytes:
    """JSON lines (sorted keys) — the bytes the default batch id is derived from."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()


def default_batch_id(content: bytes) -> str:
    """``manual-<first 16 hex of sha256(manifest)>``: the same input is always the same batch."""
    return f"manual-{hashlib.sha256(content).hexdigest()[:16]}"


def run(args: argparse.Namespace) -> int:
    """Build the manifest, run ``spark_jobs.main.main`` on a local SparkSession, print the report summary."""
    if args.images:
        records = manifest_from_images(args.images, args.limit)
    else:
        records = manifest_from_file(args.manifest, args.limit)
    if not records:
        raise CliError(f"no images found in {args.images or args.manifest}")
    content = manifest_bytes(records)
    batch_id = args.batch_id or default_batch_id(content)
    calibration = args.calibration or args.images
    if args.precision == "int8" and calibration is None:
        raise CliError("--precision int8 with --manifest needs --calibration FOLDER|MANIFEST", exit_code=2)
    if args.precision != "int8" and args.calibration:
        raise CliError("--calibration applies to --precision int8 only", exit_code=2)
    lake = args.lake if args.lake.startswith("s3://") else str(Path(args.lake).expanduser().resolve())
    if not lake.startswith("s3://"):
        Path(lake).mkdir(parents=True, exist_ok=True)

    from fruits.local.progress import SparkProgress
    from spark_jobs.lakehouse import reports as lake_io
    from spark_jobs.main import main as job_main
    from spark_jobs.session import local_spark_session

    spark = local_spark_session(app_name="fruits-featurize")
    with tempfile.TemporaryDirectory(prefix="fruits-manifest-") as tmp, SparkProgress(spark.sparkContext, len(records)):
        manifest = Path(tmp) / f"{batch_id}.jsonl"
        manifest.write_bytes(content)
        argv = ["--manifest", str(manifest), "--lake", lake, "--batch-id", batch_id,
                "--weights", args.weights, "--pca-k", str(args.pca_k), "--precision", args.precision]
        if args.precision == "int8":
            argv += ["--calibration", str(calibration)]
        if args.engine:
            argv += ["--engine", args.engine]
        if args.catalog:
            argv += ["--catalog", args.catalog]
        code = job_main(argv)
    if code != 0:
        raise CliError(f"Spark job failed for batch {batch_id} (exit {code}); see the messages above", exit_code=code)
    report = lake_io.read_report(lake, batch_id)
    counts = report["counts"]
    print(f"batch {batch_id}: {counts['featurized']} featurized, {counts['rejected']} rejected "
          f"of {counts['listed']} listed ({report['images_per_second']} images/s)")
    if report["rejected_by_reason"]:
        print("rejects: " + ", ".join(f"{k}={v}" for k, v in report["rejected_by_reason"].items()))
    print(f"model {report['model_id']}, PCA version {report['pca_version']} over {report['n_total']} images, "
          f"{report['pca_k']} components explain {report['explained_variance_k']:.1%} of the variance")
    if report.get("weights_fallback"):
        print(f"WARNING: weights fell back to random: {report['weights_fallback']}")
    print(f"lake: {lake}")
    return 0
