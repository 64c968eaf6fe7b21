"""The DynamoDB manifest table behind a small interface (one table, keys ``pk``/``sk``, GSI ``gsi1``).

Item shapes (all timestamps ISO-8601 UTC strings, sizes in bytes):

* **Image** — ``pk = "IMAGE#s3://<bucket>/<key>"``, ``sk`` = the S3 version (:func:`lambdas.identity.version_sk`:
  ``VER#<version id>``, else ``SEQ#<sequencer>#<etag>``, else ``ETAG#<etag>#<LastModified>`` for a listed version,
  else ``ETAG#<etag>``; items written before issue 18 have ``ETAG#<etag>`` and are still read); ``type="image"``,
  ``bucket``, ``key`` (real, decoded), ``version_id`` (absent when unversioned), ``etag``, ``size``, ``label``,
  ``status`` (``PENDING`` → ``CLAIMED`` → ``DONE``), ``recorded_at``, ``batch_id`` (once claimed).
  GSI: ``gsi1pk = "IMAGES#PENDING"`` while pending, then ``"BATCH#<batch_id>"`` for ever (a batch's images stay
  attached, whatever the batch's fate); ``gsi1sk = "<recorded_at>#<16 hex of pk+sk>"`` (FIFO order).
  Life cycle (issue 10): ``sequencer`` / ``seq_key`` (:func:`lambdas.identity.sequencer_key`) / ``event_time``
  of the S3 event (absent when found by listing); ``fate`` = ``superseded`` | ``removed`` once a later event of the
  key replaced or deleted it (a PENDING one is still claimed, but left out of the manifest); status ``SUPERSEDED``
  (``gsi1pk = "IMAGES#OLD"``) for a version recorded after a later event of its key (never featurized).
* **Key head** — ``pk = "IMAGE#s3://<bucket>/<key>"``, ``sk = "HEAD"``: the stamp (``sequencer``/``seq_key``,
  ``time``, ``version_id``) of the newest event or listed version applied to the key, ``etag`` and ``current_sk``
  of the live version (``""`` once removed), ``rev``. Moved only when :func:`lambdas.contracts.is_newer` says the
  new stamp is newer, by a Put conditioned on the ``rev`` read (in the record transaction), so a late event for an
  older version never wins (:func:`lambdas.dal.table_core.head_put`).
* **Erasure** — ``pk = "ERASURE#s3://<bucket>/<key>"``, ``sk = "SEQ#<seq_key>"``: ``image_uri``, ``sequencer``,
  ``time`` and ``version_id`` (the delete's),
  ``reason`` (deleted), ``status`` PENDING → CLAIMED, ``batch_id``; ``gsi1pk = "ERASURES#PENDING"`` then
  ``"ERASURES#<batch_id>"``: written to ``<manifests_prefix><batch_id>.erase.jsonl`` when that batch seals.
* **Counter** — ``pk = "META"``, ``sk = "COUNTER"``: ``pending`` = images recorded and not yet reserved by a
  batch (exact: changed only inside the same transactions that record images or reserve/release batch
  slots), ``erasures_pending`` = erasures not yet attached to a batch, ``seq`` = number of batches created
  (batch ids embed it, so they sort in sealing order).
* **Batch** — ``pk = "BATCH#<batch_id>"``, ``sk = "BATCH"``: ``batch_id``, ``seq``, ``status``
  (``CLAIMING`` → ``SEALED`` → ``STARTING`` → ``RUNNING`` → ``SUCCEEDED``; on FAILED/CANCELLED back to ``SEALED``
  for a new attempt, or ``QUARANTINED`` after MAX_ATTEMPTS failures), ``reason`` (threshold | flush),
  ``target`` (images reserved), ``remaining`` (reserved, not yet claimed), ``claimed``, ``image_count``,
  ``manifest_uri``, ``attempts`` (job runs attempted; attempt n uses client token ``<id>-a<n>``),
  ``start_errors`` / ``last_error`` / ``start_retry_at`` / ``start_retry_attempt`` (failed StartJobRun calls of
  the attempt, retried by the tick; never counted as failures),
  ``failures`` (failed job runs it was in since the last manual re-run), ``job_run_id`` (latest),
  ``job_runs`` (map jobRunId → ``{attempt, client_token, state, lead, batches, started_at, updated_at}``;
  ``attempt`` is the batch's own, ``lead``/``batches`` the run's lead and size, absent before issue 19),
  ``created_at``, ``sealed_at``, ``updated_at``. GSI: ``gsi1pk = "BATCHES#<status>"``, ``gsi1sk = batch_id``.
  Job runs of several batches (issue 19): ``run_lead`` (the batch id leading its latest job run) and ``run_token``
  (that run attempt's clientToken ``<lead>-a<n>``) on every batch of a run; the lead alone has ``run_batches``
  (list of ``{batch_id, manifest_uri, images, attempt}`` in seal order, itself first: what a re-driven start
  sends again). A batch without them runs alone (started before issue 19).
* **Job run** — ``pk = "JOBRUN#<jobRunId>"``, ``sk = "JOBRUN"``: ``batch_id`` (the lead), ``batch_ids`` (every
  batch of the run, seal order; absent before issue 19 = the lead alone), ``attempt``, ``client_token``,
  ``started_at`` (lookup for EventBridge job state events).
* **Job run slot** — ``pk = "META"``, ``sk = "JOB_RUN_SLOT"``: ``holder`` (the lead batch id of the run, absent
  when free), ``attempt``, ``batches`` (the run's batch count), ``since``. Taken and released only inside
  transactions with the status change of every batch of the run, so at most one job run is ``STARTING``/
  ``RUNNING`` at any time, and a batch is in at most one run.
* **Backfill cursor** — ``pk = "META"``, ``sk = "BACKFILL#<prefix>"`` (one per listed key prefix): ``type =
  "backfill_cursor"``, ``prefix``, ``continuation_token`` (ListObjectsV2 ``NextContinuationToken`` after the last
  recorded page), ``start_after`` (that page's last key: the fallback if S3 rejects the token),
  ``pass_started_at``, ``updated_at``, ``listed``, ``recorded``, ``pages`` (the pass so far). Present only while a
  pass is in progress: deleted when a pass lists the last page (see :mod:`lambdas.service.backfill`).

Concurrency: every multi-item change is one ``TransactWriteItems`` (≤ 100 items: a claim moves at most 99
images plus the batch item). Conditions make claims exclusive: an image moves from ``PENDING`` to one batch
only, and the batch's ``remaining`` guard stops two claimers (a live sealer and ``reconcile``) over-filling it.
Transactions cancelled for ``TransactionConflict``/throttling are retried here with jittered backoff.
The GSI must project ALL attributes (manifests are rendered from it).
"""

from __future__ import annotations

from lambdas.dal.batch_items import BatchItems
from lambdas.dal.codec import to_attr
from lambdas.dal.cursor_items import CursorItems
from lambdas.dal.image_items import ImageItems
from lambdas.dal.job_run_items import JobRunItems
from lambdas.dal.lifecycle_items import Counts, LifecycleItems, Removal
from lambdas.dal.table_core import (
    BatchStatus,
    Fate,
    ImageStatus,
    RecordResult,
    TransactionGaveUp,
    batch_key,
    job_run_key,
)


class ManifestTable(CursorItems, ImageItems, BatchItems, JobRunItems, LifecycleItems):
    """Typed operations on the manifest table; ``client`` is a boto3 DynamoDB client (thread-safe).

    One object, its operations grouped by item family: :class:`ImageItems` (counter, images), :class:`BatchItems`,
    :class:`JobRunItems` (slot, job runs),
    :class:`CursorItems` (backfill cursors), over :class:`lambdas.dal.table_core.TableCore` (transactions, queries).
    """


__all__ = [
    "BatchStatus",
    "Counts",
    "Fate",
    "ImageStatus",
    "ManifestTable",
    "RecordResult",
    "Removal",
    "TransactionGaveUp",
    "batch_key",
    "job_run_key",
    "to_attr",
]
