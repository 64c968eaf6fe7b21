"""Keys, statuses and the generic DynamoDB helpers of the manifest table (item shapes: ``manifest_table``)."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from lambdas import resources
from lambdas.contracts import VersionStamp
from lambdas.dal.codec import from_item, to_item, values
from lambdas.identity import sequencer_key

PK, SK = resources.TABLE_PARTITION_KEY, resources.TABLE_SORT_KEY
GSI, GSI_PK, GSI_SK = resources.GSI1_NAME, resources.GSI1_PARTITION_KEY, resources.GSI1_SORT_KEY
META = "META"
COUNTER_KEY = {PK: META, SK: "COUNTER"}
SLOT_KEY = {PK: META, SK: "JOB_RUN_SLOT"}
PENDING_GSI_PK = "IMAGES#PENDING"
HEAD_SK = "HEAD"  # per S3 key: the latest event applied (sequencer order)
ERASURES_PENDING_GSI_PK = "ERASURES#PENDING"
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems limit (AWS DynamoDB quotas)
MAX_CLAIM_CHUNK = MAX_TRANSACTION_ITEMS - 1  # 99 images + the batch item
RETRYABLE_CANCEL_CODES = {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


class ImageStatus(StrEnum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    DONE = "DONE"
    SUPERSEDED = "SUPERSEDED"  # recorded after a newer event of its key: never pending, never featurized


class Fate(StrEnum):
    """How an image version left the live set (attribute ``fate``; absent while it is the key's live content)."""

    SUPERSEDED = "superseded"  # a newer version of the key was recorded (S3 sequencer order)
    REMOVED = "removed"  # the object was deleted (ObjectRemoved:Delete / DeleteMarkerCreated)


class RecordResult(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"  # recorded, but older than the key's latest event: never featurized


class BatchStatus(StrEnum):
    CLAIMING = "CLAIMING"
    SEALED = "SEALED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    QUARANTINED = "QUARANTINED"


class TransactionGaveUp(RuntimeError):
    """A transaction kept being cancelled for conflicts/throttling after every retry."""


def batch_key(batch_id: str) -> dict[str, str]:
    return {PK: f"BATCH#{batch_id}", SK: "BATCH"}


def job_run_key(job_run_id: str) -> dict[str, str]:
    return {PK: f"JOBRUN#{job_run_id}", SK: "JOBRUN"}


def _key(key: dict[str, str]) -> dict[str, Any]:
    return to_item(key)


def _free_slot(batch_id: str, now: dt.datetime) -> dict[str, Any]:
    """The transaction item that frees the job run slot held by ``batch_id`` (paired with its status change)."""
    return {
        "Update": {
            "Key": _key(SLOT_KEY),
            "UpdateExpression": "REMOVE holder, attempt, batches SET since = :now",
            "ConditionExpression": "holder = :b",
            "ExpressionAttributeValues": values(b=batch_id, now=now),
        }
    }


def head_put(
    pk: str, stamp: VersionStamp, *, current: str, etag: str, previous: dict[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """The transaction item moving key ``pk``'s HEAD to the event or listed version ``stamp`` (optimistic lock).

    The caller read the HEAD (``previous``, None when absent) and decided with :func:`lambdas.contracts.is_newer`
    that ``stamp`` is newer; the Put is conditioned on that read still being current (its ``rev``; a HEAD written
    before issue 18 has none), so two writers racing on one key cannot both win: the loser re-reads and decides
    again. ``current`` is the live version's sort key (``""`` once the object was removed), ``etag`` its ETag.
    """
    rev = int(previous.get("rev", 0)) if previous else 0
    condition: dict[str, Any]
    if previous is None:
        condition = {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": PK}}
    elif "rev" in previous:
        condition = {"ConditionExpression": "rev = :prev", "ExpressionAttributeValues": values(prev=rev)}
    else:
        condition = {"ConditionExpression": "attribute_not_exists(rev)"}
    item = {
        PK: pk,
        SK: HEAD_SK,
        "type": "image_head",
        "seq_key": sequencer_key(stamp.sequencer),
        "sequencer": stamp.sequencer,
        "time": stamp.time,
        "version_id": stamp.version_id,
        "etag": etag,
        "current_sk": current,
        "rev": rev + 1,
        "updated_at": now,
    }
    return {"Put": {"Item": to_item(item), **condition}}


def claim_update(item: dict[str, Any], batch_id: str, *, gsi_pk: str) -> dict[str, Any]:
    """The transaction item claiming a PENDING image or erasure ``item`` for ``batch_id`` (its GSI partition
    becomes ``gsi_pk``); its condition fails if another batch claimed it first."""
    return {
        "Update": {
            "Key": _key({PK: item[PK], SK: item[SK]}),
            "UpdateExpression": "SET #s = :claimed, batch_id = :b, #gpk = :gpk",
            "ConditionExpression": "#s = :pending",
            "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
            "ExpressionAttributeValues": values(
                claimed=ImageStatus.CLAIMED.value, b=batch_id, gpk=gsi_pk, pending=ImageStatus.PENDING.value
            ),
        }
    }


def transition_update(
    batch_id: str,
    to: BatchStatus,
    *,
    expect: str,
    now: dt.datetime,
    set_clause: str = "",
    remove_clause: str = "",
    names: dict[str, str] | None = None,
    **vals: Any,
) -> dict[str, Any]:
    """The transaction item moving batch ``batch_id`` to status ``to`` (its GSI partition and ``updated_at`` with
    it), conditioned on ``expect`` (``#s`` names ``status``); ``set_clause`` / ``remove_clause`` add ``SET`` /
    ``REMOVE`` actions, ``names``/``vals`` their attribute names/values (``:to``, ``:to_gpk``, ``:now`` are taken)."""
    update = "SET #s = :to, #gpk = :to_gpk, updated_at = :now" + (f", {set_clause}" if set_clause else "")
    if remove_clause:
        update += f" REMOVE {remove_clause}"
    return {
        "Update": {
            "Key": _key(batch_key(batch_id)),
            "UpdateExpression": update,
            "ConditionExpression": expect,
            "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK, **(names or {})},
            "ExpressionAttributeValues": values(to=to.value, to_gpk=f"BATCHES#{to.value}", now=now, **vals),
        }
    }


class TableCore:
    """The table name, the client and the generic helpers every item family uses (``client``: boto3 DynamoDB)."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        max_transaction_attempts: int = 12,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._max_tx = max_transaction_attempts
        self._sleep = sleep

    # --- generic helpers -----------------------------------------------------------------------------
    def _transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """Run one transaction; None on success, else the per-item cancellation codes of a failed condition.

        Conflicts and throttling are retried with full-jitter exponential backoff (base 20 ms, cap 1 s);
        raises :class:`TransactionGaveUp` when they persist, ``ClientError`` for anything else.
        """
        for op in items:
            next(iter(op.values()))["TableName"] = self.table_name
        for attempt in range(self._max_tx):
            try:
                self._client.transact_write_items(TransactItems=items)
                return None
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code == "TransactionCanceledException":
                    codes = [r.get("Code") or "None" for r in err.response.get("CancellationReasons", [])]
                    if "ConditionalCheckFailed" in codes:
                        return codes
                    if not codes or not set(codes) <= RETRYABLE_CANCEL_CODES:
                        raise
                elif code not in ("TransactionConflictException", "TransactionInProgressException"):
                    raise
            self._sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
        raise TransactionGaveUp(f"transaction still conflicting after {self._max_tx} attempts")

    def _transition(
        self,
        batch_id: str,
        to: BatchStatus,
        *,
        expect: str,
        now: dt.datetime,
        set_clause: str = "",
        names: dict[str, str] | None = None,
        also: Iterable[dict[str, Any]] = (),
        **vals: Any,
    ) -> bool:
        """Move a batch to status ``to`` (its GSI partition and ``updated_at`` with it) in one transaction.

        ``expect`` is the condition on the batch item (``#s`` names ``status``), ``set_clause`` more ``SET``
        actions, ``names``/``vals`` their attribute names/values (``:to``, ``:to_gpk``, ``:now`` are taken);
        ``also`` adds transaction items such as the job run slot's. False when any condition fails.
        """
        update = transition_update(batch_id, to, expect=expect, now=now, set_clause=set_clause, names=names, **vals)
        return self._transact([update, *also]) is None

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self._client.get_item(TableName=self.table_name, Key=_key(key), ConsistentRead=True)
        return from_item(response.get("Item"))

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        """Every item of partition ``pk`` (strongly consistent, paginated): an S3 key's HEAD and versions."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PK},
            "ExpressionAttributeValues": values(pk=pk),
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._client.query(**kwargs)
            items += [from_item(raw) for raw in page.get("Items", [])]  # type: ignore[misc]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _query_gsi(self, gsi_pk: str, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Items of one GSI partition in ascending ``gsi1sk`` order (eventually consistent, paginated)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": GSI,
            "KeyConditionExpression": "#p = :p",
            "ExpressionAttributeNames": {"#p": GSI_PK},
            "ExpressionAttributeValues": values(p=gsi_pk),
        }
        returned = 0
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - returned
            page = self._client.query(**kwargs)
            for raw in page.get("Items", []):
                returned += 1
                yield from_item(raw)  # type: ignore[misc]
            if "LastEvaluatedKey" not in page or (limit is not None and returned >= limit):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
