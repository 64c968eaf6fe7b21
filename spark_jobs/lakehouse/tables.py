"""The lake's Apache Iceberg tables (format v2) through PyIceberg: catalog, schemas, batch commits and scans.

Tables live in the namespace :data:`NAMESPACE` (the Glue database ``fruits_lake`` on AWS) with their data and
metadata under ``<lake>/<table>/``:

=========  ==============================================================  ==============================
table      one row per                                                     partition spec
=========  ==============================================================  ==============================
features   featurized image of a batch run for a model (2,048 float32)     identity(model_id), month(ingested_at)
rejects    image of a batch run that could not be used, with its reason    identity(model_id)
batches    batch run (counts, seconds per stage, PCA version, variance)    identity(model_id)
near_dup.  pair of near-duplicate photos of one model (near_duplicates)    identity(model_id)
erasures   erasure of an image (or of a URI prefix) with its version stamp none (the ledger: append-only)
=========  ==============================================================  ==============================

Catalog setting (job argument ``--catalog``, Lambda setting ``JOB_CATALOG``), one string:

* ``sql:PATH`` — PyIceberg's SQL catalog in a SQLite file (the embedded default: ``<lake>/catalog.db``);
* ``glue`` or ``glue:DATABASE`` — the AWS Glue Data Catalog (database default ``fruits_lake``).

Every write of a job run is one Iceberg transaction per table that replaces exactly the rows of
``(batch_id IN <the run's batch ids>, model_id)`` (delete + append, committed together), so a re-run of any of its
batches (alone or grouped differently) never duplicates and other models and batches are never touched. Sources:
Apache Iceberg table spec v2 (https://iceberg.apache.org/spec/),
PyIceberg API docs (https://py.iceberg.apache.org/api/).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import AlwaysFalse, AlwaysTrue, And, BooleanExpression, EqualTo, In
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform, MonthTransform
from pyiceberg.types import (
    DoubleType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from spark_jobs import storage

NAMESPACE = "fruits_lake"
CATALOG_NAME = "fruits"
FEATURES, REJECTS, BATCHES, ERASURES = "features", "rejects", "batches", "erasures"
NEAR_DUPLICATES = "near_duplicates"  # pairs of near-duplicate photos (spark_jobs.lakehouse.near_duplicates)
TABLES = (FEATURES, REJECTS, BATCHES, NEAR_DUPLICATES, ERASURES)
# Iceberg's default target data file size (write.target-file-size-bytes = 512 MB, Iceberg table properties doc);
# a batch run is far below it, so each run writes one data file per partition it touches.
FORMAT_VERSION = "2"


def _float_list(field_id: int, element_id: int, name: str, doc: str, required: bool = False) -> NestedField:
    return NestedField(field_id, name, ListType(element_id, FloatType(), element_required=True), required, doc)


FEATURES_SCHEMA = Schema(
    NestedField(1, "image_uri", StringType(), required=True, doc="s3:// URI (or local path) of the photo"),
    NestedField(2, "label", StringType(), required=False, doc="folder that directly contains the photo; null if none"),
    NestedField(3, "content_sha256", StringType(), required=False, doc="hex sha256 of the bytes featurized"),
    NestedField(4, "width", IntegerType(), required=False, doc="original width in pixels (after EXIF rotation)"),
    NestedField(5, "height", IntegerType(), required=False, doc="original height in pixels"),
    _float_list(6, 12, "features", "ResNet50 feature vector, 2048 float32"),
    _float_list(7, 13, "pca", "PCA coordinates (k float32) on PCA version pca_version"),
    NestedField(8, "pca_version", IntegerType(), required=False, doc="PCA version of model_id used for pca"),
    NestedField(9, "model_id", StringType(), required=True, doc="feature space: network + weights + size (+ -bf16)"),
    NestedField(10, "ingested_at", TimestamptzType(), required=False, doc="commit time of the batch run (UTC)"),
    NestedField(11, "batch_id", StringType(), required=True, doc="batch the image was featurized in"),
    # added by schema evolution (Lake.table adds them to older tables; their rows read null):
    NestedField(14, "event_time", TimestamptzType(), required=False, doc="S3 event time of the upload (UTC)"),
    NestedField(15, "sequencer", StringType(), required=False, doc="S3 event sequencer of the upload (hex)"),
    NestedField(16, "version_id", StringType(), required=False, doc="S3 version id featurized (null: unversioned)"),
    NestedField(17, "last_modified", TimestamptzType(), required=False,
                doc="LastModified of the version when it was found by listing (UTC); null when from an event"),
)
REJECTS_SCHEMA = Schema(
    NestedField(1, "image_uri", StringType(), required=True),
    NestedField(2, "reason", StringType(), required=False, doc="not_an_image, truncated, too_large, empty, …"),
    NestedField(3, "batch_id", StringType(), required=True),
    NestedField(4, "model_id", StringType(), required=True),
    # added by schema evolution (issue 18): the version stamp of the rejected image, as in features
    NestedField(5, "event_time", TimestamptzType(), required=False, doc="S3 event time of the upload (UTC)"),
    NestedField(6, "sequencer", StringType(), required=False, doc="S3 event sequencer of the upload (hex)"),
    NestedField(7, "version_id", StringType(), required=False, doc="S3 version id (null: unversioned)"),
    NestedField(8, "last_modified", TimestamptzType(), required=False, doc="LastModified when found by listing"),
)
BATCHES_SCHEMA = Schema(
    NestedField(1, "batch_id", StringType(), required=True),
    NestedField(2, "model_id", StringType(), required=True),
    NestedField(3, "committed_at", TimestamptzType(), required=False),
    NestedField(4, "listed", IntegerType(), required=False),
    NestedField(5, "featurized", IntegerType(), required=False),
    NestedField(6, "rejected", IntegerType(), required=False),
    NestedField(7, "pca_version", IntegerType(), required=False),
    NestedField(8, "n_total", LongType(), required=False, doc="feature vectors in the PCA state of model_id"),
    NestedField(9, "explained_variance_ratio", ListType(13, DoubleType(), element_required=True), required=False),
    NestedField(10, "explained_variance_k", DoubleType(), required=False),
    NestedField(11, "images_per_second", DoubleType(), required=False, doc="featurize stage rate"),
    NestedField(12, "report", StringType(), required=False, doc="the whole batch report, JSON"),
)
NEAR_DUPLICATES_SCHEMA = Schema(
    NestedField(1, "image_uri", StringType(), required=True, doc="photo of batch_id"),
    NestedField(2, "duplicate_uri", StringType(), required=True, doc="another photo of model_id"),
    NestedField(3, "similarity", FloatType(), required=True, doc="cosine similarity of the two feature vectors"),
    NestedField(4, "model_id", StringType(), required=True),
    NestedField(5, "batch_id", StringType(), required=True, doc="batch run that recorded the pair"),
)
# The erasure ledger (issue 18): one row per erased image URI (scope "uri") or URI prefix (scope "prefix") with the
# version stamp of the erasure (lambdas.contracts.VersionStamp: the delete event's sequencer/time/version id, or
# the request time of `fruits erase`). Rows are only ever appended (never deleted, so `fruits expire` keeps them):
# every version of the key not newer than the stamp is dead, and no job run may write a row for it again.
ERASURES_SCHEMA = Schema(
    NestedField(1, "image_uri", StringType(), required=True, doc="erased image URI, or the URI prefix (scope)"),
    NestedField(2, "scope", StringType(), required=True, doc="uri | prefix"),
    NestedField(3, "sequencer", StringType(), required=False, doc="S3 sequencer of the delete event (hex)"),
    NestedField(4, "time", StringType(), required=False, doc="ISO-8601 UTC time of the delete event / request"),
    NestedField(5, "version_id", StringType(), required=False, doc="S3 version id the delete event named"),
    NestedField(6, "reason", StringType(), required=False, doc="deleted | request"),
    NestedField(7, "erasure_id", StringType(), required=True),
    NestedField(8, "recorded_at", TimestamptzType(), required=False, doc="when the ledger row was committed (UTC)"),
)
SCHEMAS: dict[str, Schema] = {FEATURES: FEATURES_SCHEMA, REJECTS: REJECTS_SCHEMA, BATCHES: BATCHES_SCHEMA,
                              NEAR_DUPLICATES: NEAR_DUPLICATES_SCHEMA, ERASURES: ERASURES_SCHEMA}

# Parquet codec of each table's data files (Iceberg table property ``write.parquet.compression-codec``; default
# zstd). ``features`` is written uncompressed: its 2,048-float vectors are nearly incompressible (zstd saves 9 % on
# features of real photos) while zstd decoding made reading them 60 % slower, and every near-duplicate search and
# ``fruits similar`` reads them all (bench/near_duplicates.py, section "codec"). The vectors are > 99 % of the
# table's bytes, so its small columns lose little. Applied to existing tables too (:func:`_evolved`).
CODEC_PROPERTY = "write.parquet.compression-codec"
CODECS: dict[str, str] = {FEATURES: "uncompressed", REJECTS: "zstd", BATCHES: "zstd", NEAR_DUPLICATES: "zstd",
                          ERASURES: "zstd"}


def table_properties(name: str) -> dict[str, str]:
    """The Iceberg table properties table ``name`` is created with (format version, Parquet codec, manifest merge)."""
    return {"format-version": FORMAT_VERSION, CODEC_PROPERTY: CODECS[name],
            # merge small manifests on commit: the metadata a commit reads stays small as batch runs accumulate
            # (Iceberg table properties, commit.manifest-merge.*)
            "commit.manifest-merge.enabled": "true"}


def _by_model(schema: Schema) -> PartitionField:
    return PartitionField(schema.find_field("model_id").field_id, 1000, IdentityTransform(), "model_id")


SPECS: dict[str, PartitionSpec] = {
    FEATURES: PartitionSpec(
        _by_model(FEATURES_SCHEMA),
        PartitionField(FEATURES_SCHEMA.find_field("ingested_at").field_id, 1001, MonthTransform(), "ingested_month"),
    ),
    REJECTS: PartitionSpec(_by_model(REJECTS_SCHEMA)),
    BATCHES: PartitionSpec(_by_model(BATCHES_SCHEMA)),
    NEAR_DUPLICATES: PartitionSpec(_by_model(NEAR_DUPLICATES_SCHEMA)),
    ERASURES: PartitionSpec(),  # small (one row per erased key); read by an image_uri filter (column statistics)
}


class CatalogSpecError(ValueError):
    """The catalog setting is not ``sql:PATH``, ``glue`` or ``glue:DATABASE``."""


@dataclass(frozen=True)
class CatalogRef:
    """A parsed catalog setting: ``kind`` ``sql`` (SQLite file ``path``) or ``glue`` (database ``namespace``)."""

    kind: str
    path: str | None = None
    namespace: str = NAMESPACE

    def describe(self) -> str:
        """The setting string this ref was parsed from (canonical form)."""
        return f"sql:{self.path}" if self.kind == "sql" else f"glue:{self.namespace}"


def default_catalog(lake: str) -> str:
    """The embedded default for a lake: a SQLite catalog file ``<lake>/catalog.db`` (local lakes only).

    Raises:
        CatalogSpecError: the lake is on S3 (name the catalog: ``glue``).
    """
    if storage.is_s3(lake):
        raise CatalogSpecError(f"lake {lake} is on S3: name its catalog (--catalog glue)")
    return f"sql:{storage.local_path(lake).resolve() / 'catalog.db'}"


def parse_catalog(spec: str) -> CatalogRef:
    """``sql:PATH`` | ``glue`` | ``glue:DATABASE`` -> :class:`CatalogRef`. Raises :class:`CatalogSpecError`."""
    kind, _, arg = spec.partition(":")
    if kind == "sql" and arg:
        return CatalogRef("sql", path=arg)
    if kind == "glue":
        return CatalogRef("glue", namespace=arg or NAMESPACE)
    raise CatalogSpecError(f"bad catalog {spec!r}: expected sql:PATH, glue or glue:DATABASE")


@functools.cache
def _load(ref: CatalogRef) -> Catalog:
    if ref.kind == "sql":
        from pyiceberg.catalog.sql import SqlCatalog

        path = storage.local_path(ref.path or "catalog.db").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{path}")
    from pyiceberg.catalog.glue import GlueCatalog

    # Region/credentials from the standard AWS environment. boto3 (Glue) honours AWS_ENDPOINT_URL but PyArrow's S3
    # client (PyIceberg's file IO) does not: pass the same endpoint on, so a local S3 (moto) sees every request.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return GlueCatalog(CATALOG_NAME, **({"s3.endpoint": endpoint} if endpoint else {}))


def load_catalog(spec: str) -> Catalog:
    """The PyIceberg catalog of a setting string (cached per process)."""
    return _load(parse_catalog(spec))


def reset_catalogs() -> None:
    """Forget cached catalogs (tests that restart moto)."""
    _load.cache_clear()


@dataclass(frozen=True)
class Lake:
    """Where the tables are: the catalog setting and the lake URI (table locations ``<lake>/<table>``)."""

    uri: str
    catalog: str

    @classmethod
    def at(cls, uri: str, catalog: str | None = None) -> Lake:
        """The lake at ``uri`` with ``catalog`` (default: :func:`default_catalog`)."""
        return cls(uri.rstrip("/"), catalog or default_catalog(uri))

    @property
    def namespace(self) -> str:
        """The catalog namespace (Glue database) holding the tables."""
        return parse_catalog(self.catalog).namespace

    def table(self, name: str, *, create: bool = True) -> Table:
        """Load table ``name`` (created with its schema, spec and location when missing and ``create``).

        ``create`` is the writers' access: a table created by older code first gets the optional columns added
        since (:func:`_evolved`). Readers pass ``create=False`` and never commit (:func:`scan` shows the columns a
        table lacks as nulls), so read-only users need no write permission on the catalog.

        Raises:
            pyiceberg.exceptions.NoSuchTableError: missing and ``create`` is False.
        """
        catalog = load_catalog(self.catalog)
        identifier = (self.namespace, name)
        try:
            table = catalog.load_table(identifier)
            return _evolved(table, name) if create else table
        except NoSuchTableError:
            if not create:
                raise
        if not catalog.namespace_exists(self.namespace):  # on AWS the database comes from CDK (no CreateDatabase)
            with contextlib.suppress(NamespaceAlreadyExistsError):
                catalog.create_namespace(self.namespace)
        try:
            return catalog.create_table(
                identifier,
                schema=SCHEMAS[name],
                partition_spec=SPECS[name],
                location=storage.join(self.uri, name),
                properties=table_properties(name),
            )
        except TableAlreadyExistsError:  # created concurrently
            return catalog.load_table(identifier)

    def exists(self, name: str) -> bool:
        """True if table ``name`` exists in the catalog."""
        return load_catalog(self.catalog).table_exists((self.namespace, name))


def missing_columns(table: Table, name: str) -> list[str]:
    """Columns of :data:`SCHEMAS` ``[name]`` the table ``name`` does not have yet (a lake written by older code)."""
    have = {field.name for field in table.schema().fields}
    return [field.name for field in SCHEMAS[name].fields if field.name not in have]


def _evolved(table: Table, name: str) -> Table:
    """``table`` with the optional columns the code added since it was created (Iceberg schema evolution:
    ``update_schema().union_by_name``, a metadata-only commit; existing rows read null in them) and the Parquet codec
    of :data:`CODECS` (a property change, also metadata-only: files written before keep their codec and read as
    before; files written after use the new one). Idempotent; a concurrent evolution that wins is reloaded.
    """
    if missing_columns(table, name):
        try:
            with table.update_schema() as update:
                update.union_by_name(SCHEMAS[name])
        except CommitFailedException:
            table.refresh()
    if table.properties.get(CODEC_PROPERTY, "zstd") != CODECS[name]:
        try:
            with table.transaction() as transaction:
                transaction.set_properties({CODEC_PROPERTY: CODECS[name]})
        except CommitFailedException:
            table.refresh()
    return table


def batch_ids_of(batch_id: str | Sequence[str]) -> list[str]:
    """One batch id or the batch ids of a job run -> the distinct ids, sorted.

    Raises:
        ValueError: no batch id.
    """
    ids = sorted({batch_id} if isinstance(batch_id, str) else set(batch_id))
    if not ids:
        raise ValueError("no batch id")
    return ids


def batch_filter(batch_id: str | Sequence[str], model_id: str) -> BooleanExpression:
    """Rows of one batch run, ``batch_id = X AND model_id = M``, or of a job run's batches,
    ``batch_id IN (X, Y, …) AND model_id = M``."""
    ids = batch_ids_of(batch_id)
    by_batch = EqualTo("batch_id", ids[0]) if len(ids) == 1 else In("batch_id", set(ids))
    return And(by_batch, EqualTo("model_id", model_id))


def to_table_schema(rows: pa.Table, name: str, schema: Schema | None = None) -> pa.Table:
    """``rows`` cast to the Arrow form of ``schema`` (default :data:`SCHEMAS` ``[name]``): column order, types,
    required fields and field ids; optional columns ``rows`` lacks are added as nulls (e.g. ``event_time`` of rows
    migrated from a Parquet lake). Pass the table's own ``table.schema()``: its field ids depend on when each column
    was added (a created table numbers nested list elements after the top-level columns, an evolved one after the
    columns it had).

    Raises:
        KeyError: a required column is missing.
    """
    target = (schema or SCHEMAS[name]).as_arrow()
    for field in target:
        if field.name not in rows.column_names:
            if not field.nullable:
                raise KeyError(f"{name}: required column {field.name!r} missing")
            rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
    return rows.select(target.names).cast(target)


def replace_batch_rows(
    lake: Lake, name: str, rows: pa.Table, *, batch_id: str | Sequence[str], model_id: str,
    summary: Mapping[str, str] | None = None,
) -> None:
    """Replace the rows of ``(batch_id, model_id)`` in table ``name`` with ``rows`` in ONE Iceberg commit.

    ``batch_id`` is one batch id, or the batch ids of a job run: then every row of those batches (and of the model)
    is replaced at once (the run's rows carry each their own batch's id), one commit whatever the number of batches.
    Delete and append go into one transaction (one metadata swap): readers see the old rows or the new ones,
    never both, never none. Empty ``rows`` only delete: a first run with nothing to write commits no snapshot.
    ``summary`` is added to the snapshot summary (e.g. the PCA version used); ``fruits.batch_id`` is the batch ids
    joined by commas (a batch id holds no comma, :data:`lambdas.contracts.BATCH_ID_RE`).

    Raises:
        ValueError: a row belongs to another batch or model, or no batch id. pyiceberg CommitFailedException: a
        concurrent commit won (the job fails and is retried).
    """
    ids = batch_ids_of(batch_id)
    table = lake.table(name)
    data = to_table_schema(rows, name, table.schema())
    for column, expected in (("batch_id", set(ids)), ("model_id", {model_id})):
        if data.num_rows and not set(data.column(column).to_pylist()) <= expected:
            raise ValueError(f"{name}: rows of another {column} than {', '.join(sorted(expected))}")
    properties = {"fruits.batch_id": ",".join(ids), "fruits.model_id": model_id, **(summary or {})}
    with warnings.catch_warnings(), table.transaction() as tx:
        warnings.filterwarnings("ignore", "Delete operation did not match any records")  # a batch's first run
        if data.num_rows:
            tx.overwrite(data, overwrite_filter=batch_filter(ids, model_id), snapshot_properties=properties)
        else:  # nothing to add: only the delete (PyIceberg would commit an empty append snapshot on every run)
            tx.delete(batch_filter(ids, model_id), snapshot_properties=properties)


def scan(
    lake: Lake,
    name: str,
    *,
    model_id: str | None = None,
    batch_ids: list[str] | None = None,
    columns: tuple[str, ...] | None = None,
) -> pa.Table:
    """Current rows of table ``name`` as Arrow (empty table of the schema if it does not exist yet); columns the
    code added since the table was written read null (the table is not changed).

    Args:
        model_id: keep one model's rows. batch_ids: keep these batches. columns: project these columns.
    """
    if not lake.exists(name):
        empty = SCHEMAS[name].as_arrow().empty_table()
        return empty.select(list(columns)) if columns else empty
    row_filter: BooleanExpression = AlwaysTrue()
    if model_id is not None:
        row_filter = And(row_filter, EqualTo("model_id", model_id))
    if batch_ids is not None:
        row_filter = And(row_filter, In("batch_id", set(batch_ids)) if batch_ids else AlwaysFalse())
    table = lake.table(name, create=False)
    missing = missing_columns(table, name)  # a table written by older code, not evolved yet by a writer
    fields = tuple(c for c in columns if c not in missing) if columns else ("*",)
    rows = table.scan(row_filter=row_filter, selected_fields=fields).to_arrow()
    schema = SCHEMAS[name].as_arrow()
    for column in missing if columns is None else [c for c in columns if c in missing]:
        rows = rows.append_column(schema.field(column), pa.nulls(rows.num_rows, schema.field(column).type))
    return rows.select(list(columns)) if columns else rows


def model_ids(lake: Lake) -> list[str]:
    """Distinct ``model_id`` values in ``features``, sorted."""
    column = scan(lake, FEATURES, columns=("model_id",)).column("model_id")
    return sorted(set(column.to_pylist()))
