"""``fruits similar PHOTO|URI`` and ``fruits duplicates``: similar photos and near-duplicate groups of one model.

``similar``: exact cosine search over the model's full feature vectors centred on their mean (not the PCA
coordinates: rows of different batch runs carry coordinates of different PCA versions, so only the full vectors
compare across the lake). A photo
in the lake uses its stored row; another photo is featurized on the fly with the model's weights and engine.
Erased photos never appear.

``duplicates``: groups (connected components) of the ``near_duplicates`` pairs the batch runs recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict

from fruits.cli.errors import CliError
from fruits.cli.types import lake_location, positive_int

LAKE_HELP = "lake root (directory or s3://)"
CATALOG_HELP = "Iceberg catalog: sql:PATH | glue[:DATABASE] (default: sql:<lake>/catalog.db)"


def cosine(text: str) -> float:
    """Parse a cosine similarity in [-1, 1]; raises ``argparse.ArgumentTypeError`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a similarity in [-1, 1], got {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a similarity in [-1, 1], got {text}")
    return value


def _lake(args: argparse.Namespace):
    from spark_jobs.lakehouse import tables

    try:
        return tables.Lake.at(str(args.lake), args.catalog)
    except tables.CatalogSpecError as err:
        raise CliError(str(err)) from None


def _print_rows(rows: list[dict], fmt: str, title: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["image_uri"])
        writer.writeheader()
        writer.writerows(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in rows[0] if rows else ("image_uri",):
        table.add_column(name, justify="right" if name in ("rank", "size", "similarity", "group") else "left")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)


def run_similar(args: argparse.Namespace) -> int:
    """Print the k photos most similar to the given photo (table, CSV or JSON)."""
    from fruits.similarity import SimilarityError, similar

    try:
        result = similar(_lake(args), args.photo, args.model_id, args.k)
    except SimilarityError as err:
        raise CliError(str(err)) from None
    if args.format == "json":
        print(json.dumps(asdict(result), indent=2))
        return 0
    rows = [{"rank": h.rank, "image_uri": h.image_uri, "label": h.label or "", "similarity": h.similarity}
            for h in result.hits]
    source = "its stored row" if result.in_lake else "featurized now (not in the lake)"
    _print_rows(rows, args.format, f"{result.query} ({source}) — centred cosine of full feature vectors, model "
                                   f"{result.model_id}, {result.searched_rows} rows searched")
    return 0


def run_duplicates(args: argparse.Namespace) -> int:
    """Print the near-duplicate groups of one model with their sizes (table, CSV or JSON)."""
    from fruits.similarity import SimilarityError, choose_model, duplicate_groups
    from spark_jobs.lakehouse import near_duplicates

    if args.rebuild:
        lake = _lake(args)
        try:
            model_id = choose_model(lake, args.model_id)
        except SimilarityError as err:
            raise CliError(str(err)) from None
        threshold = near_duplicates.DEFAULT_MIN_SIMILARITY if args.min_similarity is None else args.min_similarity
        pairs = near_duplicates.rebuild(lake, model_id, threshold)
        print(f"model {model_id}: {pairs} near-duplicate pair(s) recorded at similarity >= {threshold}",
              file=sys.stderr)
    try:
        model_id, groups, n_photos = duplicate_groups(_lake(args), args.model_id, args.min_similarity)
    except SimilarityError as err:
        raise CliError(str(err)) from None
    if args.format == "json":
        print(json.dumps({"model_id": model_id, "photos": n_photos, "groups": [asdict(g) for g in groups]},
                         indent=2))
        return 0
    rows = [{"group": g.group, "size": g.size, "labels": ", ".join(g.labels),
             "similarity": f"{g.min_similarity:.4f}..{g.max_similarity:.4f}",
             "examples": ", ".join(g.image_uris[:2]) + (", …" if g.size > 2 else "")}
            for g in groups]
    if args.format == "csv":
        rows = [{"group": g.group, "size": g.size, "image_uri": uri} for g in groups for uri in g.image_uris]
    shown = rows if args.format == "csv" else rows[: args.max_groups]
    grouped = sum(g.size for g in groups)
    _print_rows(shown, args.format, f"near-duplicate groups of model {model_id}")
    if args.format == "table":
        print(f"{len(groups)} group(s) holding {grouped} of {n_photos} photos; {n_photos - grouped} photo(s) have "
              "no near-duplicate" + (f" (first {args.max_groups} groups shown)" if len(groups) > args.max_groups
                                     else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``similar`` and ``duplicates`` sub-commands."""
    from spark_jobs.lakehouse.near_duplicates import DEFAULT_MIN_SIMILARITY

    doc = __doc__.split("\n\n")
    sim = subparsers.add_parser("similar", help="the k photos most similar to a photo (exact cosine search)",
                                description=doc[1])
    sim.add_argument("photo", metavar="PHOTO|URI", help="an image_uri of the lake, a local photo or an s3:// URI")
    sim.add_argument("-k", type=positive_int, default=10, help="photos returned")
    sim.add_argument("--model-id", default=None, help="model whose features are searched (required if several)")
    sim.add_argument("--lake", type=lake_location, default="lake", help=LAKE_HELP)
    sim.add_argument("--catalog", default=None, help=CATALOG_HELP)
    sim.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    sim.set_defaults(func=run_similar)

    dup = subparsers.add_parser("duplicates", help="groups of near-duplicate photos (connected components)",
                                description=doc[2])
    dup.add_argument("--min-similarity", type=cosine, default=None,
                     help="keep pairs at least this similar (default: every recorded pair; the job records pairs "
                          f">= its --near-duplicate-similarity, default {DEFAULT_MIN_SIMILARITY})")
    dup.add_argument("--model-id", default=None, help="model whose pairs are grouped (required if several)")
    dup.add_argument("--lake", type=lake_location, default="lake", help=LAKE_HELP)
    dup.add_argument("--catalog", default=None, help=CATALOG_HELP)
    dup.add_argument("--format", choices=("table", "csv", "json"), default="table",
                     help="output format (csv: one line per photo of a group)")
    dup.add_argument("--max-groups", type=positive_int, default=30, help="groups shown in table format")
    dup.add_argument("--rebuild", action="store_true",
                     help="first record the pairs of every batch of the model (a lake written before the table, or "
                          "another threshold: --min-similarity)")
    dup.set_defaults(func=run_duplicates)
