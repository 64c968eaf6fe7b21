"""``fruits sql | compact | expire | erase | migrate-lake``: look at and maintain the lake's Iceberg tables.

``sql`` runs DuckDB SQL over the tables ``features``, ``rejects``, ``batches`` and ``near_duplicates`` (their
current snapshot, scanned with PyIceberg into Arrow): no Spark, the same SQL that works in Athena on
``fruits_lake.<table>``.
The query cannot touch local files (DuckDB ``enable_external_access = false`` once the tables are registered:
no ``read_csv('/etc/passwd')``, ``COPY … TO``, ``ATTACH`` or extension install) unless ``--allow-files`` is given.
"""

from __future__ import annotations

import argparse
import re

from fruits.cli.errors import CliError
from fruits.cli.types import existing_dir, lake_location, non_negative_int, positive_int

LAKE_HELP = "lake root"
CATALOG_HELP = "Iceberg catalog: sql:PATH | glue[:DATABASE] (default: sql:<lake>/catalog.db)"


def _lake(args: argparse.Namespace):
    from spark_jobs.lakehouse import tables

    try:
        return tables.Lake.at(str(args.lake), args.catalog)
    except tables.CatalogSpecError as err:
        raise CliError(str(err)) from None


def run_sql(args: argparse.Namespace) -> int:
    """Run one SQL statement with DuckDB over the tables it names; print the result as a table or CSV."""
    import duckdb

    from spark_jobs.lakehouse import tables

    lake = _lake(args)
    con = duckdb.connect()
    for name in tables.TABLES:
        if re.search(rf"\b{name}\b", args.query, re.IGNORECASE):
            scan = tables.scan(lake, name)
            con.register(name, scan)
    if not args.allow_files:
        # DuckDB "Securing DuckDB" guide: no file system, no extensions; locked so the query cannot re-enable them
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    try:
        relation = con.sql(args.query)
        result = relation.to_arrow_table() if relation is not None else None
    except duckdb.PermissionException as err:
        raise CliError(f"{str(err).splitlines()[0]} (fruits sql reads only the lake tables; --allow-files lets "
                       "a query read or write local files)") from None
    except duckdb.Error as err:
        raise CliError(f"SQL error: {str(err).splitlines()[0]}") from None
    if result is None:
        raise CliError("fruits sql runs queries that return rows (SELECT, WITH, DESCRIBE, ...)")
    if args.format == "csv":
        import sys

        import pyarrow.csv as pcsv

        pcsv.write_csv(result, sys.stdout.buffer)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for name in result.column_names:
        table.add_column(name)
    for row in result.to_pylist()[: args.max_rows]:
        table.add_row(*(_cell(value) for value in row.values()))
    console = Console()
    console.print(table)
    if result.num_rows > args.max_rows:
        console.print(f"({result.num_rows} rows, first {args.max_rows} shown; --max-rows N or --format csv)")
    return 0


def _cell(value: object) -> str:
    if isinstance(value, list) and len(value) > 6:
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value[:4])
        return f"[{head}, … ({len(value)})]"
    return str(value)


def run_compact(args: argparse.Namespace) -> int:
    """Compact one model's features files; print files before/after and the unchanged content hash."""
    from fruits.lake_maintenance import compact

    try:
        result = compact(_lake(args), args.model_id, args.target_mb)
    except LookupError as err:
        raise CliError(str(err)) from None
    print(f"model_id {result.model_id}: {result.files_before} -> {result.files_after} data files, "
          f"{result.rows} rows unchanged (content sha256 {result.content_sha256[:16]}…)")
    return 0


def run_expire(args: argparse.Namespace) -> int:
    """Expire snapshots older than the retention and delete the data files nothing references any more; then the
    PCA states and fits beyond the retention (never the latest, a kept checkpoint, or a fit a row carries)."""
    from fruits.lake_maintenance import expire_pca, expire_snapshots

    lake = _lake(args)
    for result in expire_snapshots(lake, args.retention_days):
        print(f"{result.table}: {result.snapshots_expired} snapshot(s) expired, {result.files_deleted} "
              "unreferenced data file(s) deleted")
    for done in expire_pca(lake, args.retention_days, args.pca_checkpoints):
        print(f"pca/{done.model_id}: {done.states_deleted} state(s) and {done.fits_deleted} fit(s) deleted "
              f"({done.bytes_deleted / 1e6:.1f} MB)")
    return 0


def run_erase(args: argparse.Namespace) -> int:
    """Erase images (URIs and/or a prefix) from every model: rows deleted, PCA downdated; print what was done."""
    from spark_jobs import storage
    from spark_jobs.lakehouse import erasure, tables

    try:
        report = erasure.erase_images(args.lake, args.uris, prefix=args.prefix, catalog=args.catalog)
    except (erasure.ErasureError, tables.CatalogSpecError) as err:
        raise CliError(str(err)) from None
    except storage.ObjectExistsError as err:  # pca.ConcurrentCommitError included
        raise CliError(f"another commit of the same model is in progress, retry later ({err})") from None
    for model in report.models:
        print(f"{model.model_id}: {model.rows} feature row(s) erased; PCA version {model.pca_version} "
              f"({model.n_total} vectors)")
    if not report.models:
        print("no feature row matched")
    print(f"rejects: {report.rejects_deleted} row(s) erased; erasure id {report.erasure_id}. Older snapshots still "
          "hold the rows until `fruits expire` removes them.")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """Migrate a legacy Parquet lake into the tables and compact a legacy ``pca/`` tree; print what was done."""
    from fruits.migrate import MigrationError, has_legacy_tables, migrate_lake
    from fruits.migrate_pca import compact_pca_tree

    tables_migrated = has_legacy_tables(args.lake)
    if tables_migrated:
        try:
            result = migrate_lake(args.lake, args.catalog, remove_legacy=args.remove_legacy)
        except MigrationError as err:
            raise CliError(str(err)) from None
        print(f"migrated {result.features} features rows, {result.rejects} rejects, {result.batches} batch reports; "
              f"contents equal (features sha256 {result.features_sha256[:16]}…)")
    compacted = compact_pca_tree(str(args.lake))
    for done in compacted:
        print(f"pca/{done.model_id}: {done.versions} legacy version(s) converted, {done.stats_files_deleted} "
              f"statistics file(s) deleted, {done.bytes_before / 1e6:.1f} MB -> {done.bytes_after / 1e6:.1f} MB")
    if not tables_migrated and not compacted:
        raise CliError(f"{args.lake} has no legacy features/batch_id=*/ folder and no legacy pca/ version: "
                       "nothing to migrate")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sql``, ``compact``, ``expire``, ``erase`` and ``migrate-lake`` sub-commands."""
    from fruits.lake_maintenance import DEFAULT_PCA_CHECKPOINTS, DEFAULT_RETENTION_DAYS

    sql = subparsers.add_parser("sql", help="run SQL (DuckDB) over the lake tables (features, rejects, batches, …)",
                                description=__doc__.split("\n\n", 1)[1])
    sql.add_argument("query", help='e.g. "SELECT label, count(*) FROM features GROUP BY label"')
    sql.add_argument("--lake", type=existing_dir, default="lake", help=LAKE_HELP)
    sql.add_argument("--catalog", default=None, help=CATALOG_HELP)
    sql.add_argument("--format", choices=("table", "csv"), default="table", help="output format")
    sql.add_argument("--max-rows", type=positive_int, default=50, help="rows shown in table format")
    sql.add_argument("--allow-files", action="store_true",
                     help="let the query read and write local files (read_csv, COPY … TO, ATTACH); off by default")
    sql.set_defaults(func=run_sql)

    compact = subparsers.add_parser("compact", help="rewrite one model's small feature files into large ones")
    compact.add_argument("--model-id", required=True, help="model whose features are compacted")
    compact.add_argument("--target-mb", type=positive_int, default=128, help="target data file size (MiB)")
    compact.add_argument("--lake", type=existing_dir, default="lake", help=LAKE_HELP)
    compact.add_argument("--catalog", default=None, help=CATALOG_HELP)
    compact.set_defaults(func=run_compact)

    expire = subparsers.add_parser("expire", help="expire old snapshots so deleted rows disappear from storage")
    expire.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                        help="keep snapshots younger than this (0: keep only the current one)")
    expire.add_argument("--pca-checkpoints", type=non_negative_int, default=DEFAULT_PCA_CHECKPOINTS,
                        help="full PCA states kept besides the latest (checkpoints, every 100 versions)")
    expire.add_argument("--lake", type=existing_dir, default="lake", help=LAKE_HELP)
    expire.add_argument("--catalog", default=None, help=CATALOG_HELP)
    expire.set_defaults(func=run_expire)

    erase = subparsers.add_parser(
        "erase", help="erase images from the lake (GDPR): rows deleted from every table, PCA downdated exactly",
        description="Delete every row of the given images (exact s3:// URIs and/or every URI under --prefix) from "
        "features and rejects of every model, and write a new PCA version without them. Then delete the photos "
        "from the bucket and run `fruits expire` so older snapshots stop holding the rows.")
    erase.add_argument("uris", nargs="*", help="image URIs, e.g. s3://BUCKET/images/Training/Kiwi/0_100.jpg")
    erase.add_argument("--prefix", default=None, help="erase every image whose URI starts with this")
    erase.add_argument("--lake", type=lake_location, default="lake", help=LAKE_HELP + " (directory or s3://)")
    erase.add_argument("--catalog", default=None, help=CATALOG_HELP)
    erase.set_defaults(func=run_erase)

    migrate = subparsers.add_parser(
        "migrate-lake", help="turn a Parquet lake (features/batch_id=…) into the tables; compact a legacy pca/ tree")
    migrate.add_argument("lake", type=existing_dir, help="the legacy lake root (migrated in place)")
    migrate.add_argument("--catalog", default=None, help=CATALOG_HELP)
    migrate.add_argument("--remove-legacy", action="store_true",
                         help="delete the legacy features/batch_id=*/ and rejects/batch_id=*/ folders once checked")
    migrate.set_defaults(func=run_migrate)
