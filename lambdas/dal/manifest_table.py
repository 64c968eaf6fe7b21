"""The DynamoDB manifest table behind a small interface (one table, keys ``pk``/``sk``, GSI ``gsi1``).

Item shapes (all timestamps ISO-8601 UTC strings, sizes in bytes):

* **Image** — ``pk = "IMAGE#s3://<bucket>/<key>"``, ``sk = "ETAG#<etag without quotes>"``; ``type="image"``,
  ``bucket``, ``key`` (real, decoded), ``version_id`` (absent when unversioned), ``etag``, ``size``, ``label``,
  ``status`` (``PENDING`` → ``CLAIMED`` → ``DONE``), ``recorded_at``, ``batch_id`` (once claimed).
  GSI: ``gsi1pk = "IMAGES#PENDING"`` while pending, then ``"BATCH#<batch_id>"`` for ever (a batch's images stay
  attached, whatever the batch's fate); ``gsi1sk = "<recorded_at>#<16 hex of pk+sk>"`` (FIFO order).
* **Counter** — ``pk = "META"``, ``sk = "COUNTER"``: ``pending`` = images recorded and not yet reserved by a
  batch (exact: changed only inside the same transactions that record images or reserve/release batch
  slots), ``seq`` = number of batches created (batch ids embed it, so they sort in sealing order).
* **Batch** — ``pk = "BATCH#<batch_id>"``, ``sk = "BATCH"``: ``batch_id``, ``seq``, ``status``
  (``CLAIMING`` → ``SEALED`` → ``STARTING`` → ``RUNNING`` → ``SUCCEEDED``; on FAILED/CANCELLED back to ``SEALED``
  for a new attempt, or ``QUARANTINED`` after MAX_ATTEMPTS failures), ``reason`` (threshold | flush),
  ``target`` (images reserved), ``remaining`` (reserved, not yet claimed), ``claimed``, ``image_count``,
  ``manifest_uri``, ``attempts`` (job runs attempted; attempt n uses client token ``<id>-a<n>``),
  ``failures`` (failed attempts since the last manual re-run), ``job_run_id`` (latest),
  ``job_runs`` (map jobRunId → ``{attempt, client_token, state, started_at, updated_at}``),
  ``created_at``, ``sealed_at``, ``updated_at``. GSI: ``gsi1pk = "BATCHES#<status>"``, ``gsi1sk = batch_id``.
* **Job run** — ``pk = "JOBRUN#<jobRunId>"``, ``sk = "JOBRUN"``: ``batch_id``, ``attempt``, ``client_token``,
  ``started_at`` (lookup for EventBridge job state events).
* **Job run slot** — ``pk = "META"``, ``sk = "JOB_RUN_SLOT"``: ``holder`` (batch id, absent when free),
  ``attempt``, ``since``. Taken and released only inside transactions with the batch's status change, so at
  most one batch is ``STARTING``/``RUNNING`` at any time.

Concurrency: every multi-item change is one ``TransactWriteItems`` (≤ 100 items: a claim moves at most 99
images plus the batch item). Conditions make claims exclusive: an image moves from ``PENDING`` to one batch
only, and the batch's ``remaining`` guard stops two claimers (a live sealer and ``reconcile``) over-filling it.
Transactions cancelled for ``TransactionConflict``/throttling are retried here with jittered backoff.
The GSI must project ALL attributes (manifests are rendered from it).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from lambdas import resources
from lambdas.dal.codec import from_item, to_attr, to_item, values
from lambdas.logic.keys import ImageRef, image_item_key, short_hash

PK, SK = resources.TABLE_PARTITION_KEY, resources.TABLE_SORT_KEY
GSI, GSI_PK, GSI_SK = resources.GSI1_NAME, resources.GSI1_PARTITION_KEY, resources.GSI1_SORT_KEY
META = "META"
COUNTER_KEY = {PK: META, SK: "COUNTER"}
SLOT_KEY = {PK: META, SK: "JOB_RUN_SLOT"}
PENDING_GSI_PK = "IMAGES#PENDING"
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems limit (AWS DynamoDB quotas)
MAX_CLAIM_CHUNK = MAX_TRANSACTION_ITEMS - 1  # 99 images + the batch item
RETRYABLE_CANCEL_CODES = {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


class ImageStatus(StrEnum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    DONE = "DONE"


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


def _free_slot(batch_id: str, now: str) -> dict[str, Any]:
    """The transaction item that frees the job run slot held by ``batch_id`` (paired with its status change)."""
    return {
        "Update": {
            "Key": _key(SLOT_KEY),
            "UpdateExpression": "REMOVE holder, attempt SET since = :now",
            "ConditionExpression": "holder = :b",
            "ExpressionAttributeValues": values(b=batch_id, now=now),
        }
    }


class ManifestTable:
    """Typed operations on the manifest table; ``client`` is a boto3 DynamoDB client (thread-safe)."""

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

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self._client.get_item(TableName=self.table_name, Key=_key(key), ConsistentRead=True)
        return from_item(response.get("Item"))

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

    # --- counter -------------------------------------------------------------------------------------
    def counter(self) -> tuple[int, int]:
        """``(pending, seq)`` read with strong consistency (0, 0 on an empty table)."""
        item = self._get(COUNTER_KEY) or {}
        return int(item.get("pending", 0)), int(item.get("seq", 0))

    # --- images --------------------------------------------------------------------------------------
    def record_image(self, ref: ImageRef, *, label: str | None, now: str) -> bool:
        """Record one image as PENDING and count it, atomically; False if it was already recorded (no-op).

        ``label`` None (an image with no class folder) leaves the attribute out.
        """
        pk, sk = image_item_key(ref.bucket, ref.key, ref.etag)
        item = {
            PK: pk,
            SK: sk,
            "type": "image",
            "bucket": ref.bucket,
            "key": ref.key,
            "version_id": ref.version_id,
            "etag": ref.etag,
            "size": ref.size,
            "label": label,
            "status": ImageStatus.PENDING.value,
            "recorded_at": now,
            GSI_PK: PENDING_GSI_PK,
            GSI_SK: f"{now}#{short_hash(pk, sk)}",
        }
        codes = self._transact(
            [
                {
                    "Put": {
                        "Item": to_item(item),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PK},
                    }
                },
                {
                    "Update": {
                        "Key": _key(COUNTER_KEY),
                        "UpdateExpression": "ADD pending :one",
                        "ExpressionAttributeValues": values(one=1),
                    }
                },
            ]
        )
        return codes is None

    def existing_images(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the image ``(pk, sk)`` keys are already recorded (BatchGetItem, 100 keys per call)."""
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), 100):
            request = {
                self.table_name: {
                    "Keys": [_key({PK: pk, SK: sk}) for pk, sk in dict.fromkeys(keys[start : start + 100])],
                    "ProjectionExpression": "#pk, #sk",
                    "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
                }
            }
            attempt = 0
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = from_item(raw) or {}
                    found.add((item[PK], item[SK]))
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self._sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
                    attempt += 1
        return found

    def pending_images(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` PENDING images, oldest first (GSI: may lag a just-recorded image)."""
        return list(self._query_gsi(PENDING_GSI_PK, limit=limit))

    def batch_images(self, batch_id: str) -> list[dict[str, Any]]:
        """Every image claimed by ``batch_id`` (GSI, eventually consistent)."""
        return list(self._query_gsi(f"BATCH#{batch_id}"))

    def mark_images_done(self, batch_id: str, images: list[dict[str, Any]], *, now: str) -> int:
        """Set ``status=DONE`` on the batch's images (idempotent); returns how many changed.

        Transactions of up to :data:`MAX_TRANSACTION_ITEMS` updates, each conditioned on ``batch_id``; a chunk
        whose condition fails for some image (it no longer belongs to the batch) is redone one image at a time,
        so the others are still marked.
        """
        todo = [image for image in images if image.get("status") != ImageStatus.DONE]
        changed = 0
        for start in range(0, len(todo), MAX_TRANSACTION_ITEMS):
            chunk = todo[start : start + MAX_TRANSACTION_ITEMS]
            updates = [self._done_update(batch_id, image, now) for image in chunk]
            if self._transact([{"Update": update} for update in updates]) is None:
                changed += len(chunk)
                continue
            for update in updates:
                try:
                    self._client.update_item(**{**update, "TableName": self.table_name})
                    changed += 1
                except ClientError as err:
                    if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        return changed

    @staticmethod
    def _done_update(batch_id: str, image: dict[str, Any], now: str) -> dict[str, Any]:
        """The UpdateItem arguments (without TableName) that mark ``image`` DONE if it belongs to ``batch_id``."""
        return {
            "Key": _key({PK: image[PK], SK: image[SK]}),
            "UpdateExpression": "SET #s = :done, done_at = :now",
            "ConditionExpression": "batch_id = :b",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values(done=ImageStatus.DONE.value, now=now, b=batch_id),
        }

    # --- batches -------------------------------------------------------------------------------------
    def reserve_batch(self, *, batch_id: str, seq: int, expected_seq: int, size: int, reason: str, now: str) -> bool:
        """Take ``size`` from the pending counter and create the CLAIMING batch, atomically.

        Optimistic on ``seq``: fails (False) if another batch was reserved since ``counter()`` was read, or if
        fewer than ``size`` images are pending. ``seq`` must be ``expected_seq + 1``.
        """
        seq_condition = "(attribute_not_exists(seq) OR seq = :expected)" if expected_seq == 0 else "seq = :expected"
        batch = {
            **batch_key(batch_id),
            "type": "batch",
            "batch_id": batch_id,
            "seq": seq,
            "status": BatchStatus.CLAIMING.value,
            "reason": reason,
            "target": size,
            "remaining": size,
            "claimed": 0,
            "attempts": 0,
            "failures": 0,
            "job_runs": {},
            "created_at": now,
            "updated_at": now,
            GSI_PK: f"BATCHES#{BatchStatus.CLAIMING.value}",
            GSI_SK: batch_id,
        }
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(COUNTER_KEY),
                        "UpdateExpression": "SET pending = pending - :k, seq = :seq",
                        "ConditionExpression": f"pending >= :k AND {seq_condition}",
                        "ExpressionAttributeValues": values(k=size, seq=seq, expected=expected_seq),
                    }
                },
                {
                    "Put": {
                        "Item": to_item(batch),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PK},
                    }
                },
            ]
        )
        return codes is None

    def claim_images(self, batch_id: str, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Claim PENDING ``candidates`` (≤ 99) for a CLAIMING batch; returns the images actually claimed.

        Each attempt is one transaction: the batch's ``remaining -= n`` (condition ``remaining >= n``) plus one
        conditional update per image (condition ``status = PENDING``). Images another batch claimed first are
        dropped and the rest retried (trimmed to the batch's ``remaining``); returns ``[]`` when the batch is full
        or no longer CLAIMING.
        """
        todo = list(candidates[:MAX_CLAIM_CHUNK])
        while todo:
            n = len(todo)
            items: list[dict[str, Any]] = [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET remaining = remaining - :n, claimed = claimed + :n",
                        "ConditionExpression": "#s = :claiming AND remaining >= :n",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": values(n=n, claiming=BatchStatus.CLAIMING.value),
                    }
                }
            ]
            for image in todo:
                items.append(
                    {
                        "Update": {
                            "Key": _key({PK: image[PK], SK: image[SK]}),
                            "UpdateExpression": "SET #s = :claimed, batch_id = :b, #gpk = :gpk",
                            "ConditionExpression": "#s = :pending",
                            "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
                            "ExpressionAttributeValues": values(
                                claimed=ImageStatus.CLAIMED.value,
                                b=batch_id,
                                gpk=f"BATCH#{batch_id}",
                                pending=ImageStatus.PENDING.value,
                            ),
                        }
                    }
                )
            codes = self._transact(items)
            if codes is None:
                return [{**image, "status": ImageStatus.CLAIMED.value, "batch_id": batch_id} for image in todo]
            todo = [image for image, code in zip(todo, codes[1:], strict=True) if code != "ConditionalCheckFailed"]
            if codes[0] == "ConditionalCheckFailed":  # fewer places left than asked (or no longer CLAIMING)
                batch = self.get_batch(batch_id) or {}
                if batch.get("status") != BatchStatus.CLAIMING or int(batch.get("remaining", 0)) == 0:
                    return []
                todo = todo[: int(batch["remaining"])]
        return []

    def release_shortfall(self, batch_id: str, remaining: int, *, now: str) -> bool:
        """Give ``remaining`` unclaimed reservations back to the pending counter (batch ``remaining`` → 0)."""
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET remaining = :zero, target = target - :r, updated_at = :now",
                        "ConditionExpression": "#s = :claiming AND remaining = :r",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": values(
                            zero=0, r=remaining, now=now, claiming=BatchStatus.CLAIMING.value
                        ),
                    }
                },
                {
                    "Update": {
                        "Key": _key(COUNTER_KEY),
                        "UpdateExpression": "ADD pending :r",
                        "ExpressionAttributeValues": values(r=remaining),
                    }
                },
            ]
        )
        return codes is None

    def drop_empty_batch(self, batch_id: str) -> bool:
        """Delete a CLAIMING batch whose reservation was entirely released (nothing claimed, nothing left)."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key=_key(batch_key(batch_id)),
                ConditionExpression="#s = :claiming AND claimed = :zero AND remaining = :zero",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(claiming=BatchStatus.CLAIMING.value, zero=0),
            )
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def seal_batch(self, batch_id: str, *, image_count: int, manifest_uri: str, now: str) -> bool:
        """CLAIMING → SEALED once fully claimed (``remaining = 0``, ``claimed = image_count``); False otherwise."""
        return self._update_batch(
            batch_id,
            "SET #s = :sealed, #gpk = :gpk, image_count = :n, manifest_uri = :m, sealed_at = :now, updated_at = :now",
            "#s = :claiming AND remaining = :zero AND claimed = :n",
            sealed=BatchStatus.SEALED.value,
            gpk=f"BATCHES#{BatchStatus.SEALED.value}",
            n=image_count,
            m=manifest_uri,
            now=now,
            claiming=BatchStatus.CLAIMING.value,
            zero=0,
        )

    def _update_batch(self, batch_id: str, update: str, condition: str, **vals: Any) -> bool:
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=_key(batch_key(batch_id)),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status", "#gpk": GSI_PK},
                ExpressionAttributeValues=values(**vals),
            )
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch item (strongly consistent) or None."""
        return self._get(batch_key(batch_id))

    def batches_by_status(self, status: BatchStatus, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Batches in ``status``, oldest (lowest batch id) first (GSI, eventually consistent)."""
        return list(self._query_gsi(f"BATCHES#{status.value}", limit=limit))

    def all_batches(self) -> list[dict[str, Any]]:
        """Every batch, sorted by batch id."""
        found = [batch for status in BatchStatus for batch in self.batches_by_status(status)]
        return sorted(found, key=lambda batch: batch["batch_id"])

    def requeue_batch(self, batch_id: str, *, now: str) -> bool:
        """Manual re-run: SUCCEEDED / QUARANTINED / SEALED → SEALED with ``failures = 0`` (False otherwise)."""
        return self._update_batch(
            batch_id,
            "SET #s = :sealed, #gpk = :gpk, failures = :zero, updated_at = :now",
            "#s IN (:succeeded, :quarantined, :sealed)",
            sealed=BatchStatus.SEALED.value,
            gpk=f"BATCHES#{BatchStatus.SEALED.value}",
            zero=0,
            now=now,
            succeeded=BatchStatus.SUCCEEDED.value,
            quarantined=BatchStatus.QUARANTINED.value,
        )

    # --- job run slot and job runs -------------------------------------------------------------------
    def get_slot(self) -> dict[str, Any]:
        """The job run slot item (``{}`` when never used; free when it has no ``holder``)."""
        return self._get(SLOT_KEY) or {}

    def acquire_slot(self, batch_id: str, *, attempts: int, now: str) -> bool:
        """Take the free job run slot for SEALED ``batch_id`` and move it to STARTING with attempt ``attempts+1``."""
        attempt = attempts + 1
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(SLOT_KEY),
                        "UpdateExpression": "SET holder = :b, attempt = :a, since = :now",
                        "ConditionExpression": "attribute_not_exists(holder)",
                        "ExpressionAttributeValues": values(b=batch_id, a=attempt, now=now),
                    }
                },
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :starting, #gpk = :gpk, attempts = :a, updated_at = :now",
                        "ConditionExpression": "#s = :sealed AND attempts = :prev",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
                        "ExpressionAttributeValues": values(
                            starting=BatchStatus.STARTING.value,
                            gpk=f"BATCHES#{BatchStatus.STARTING.value}",
                            a=attempt,
                            now=now,
                            sealed=BatchStatus.SEALED.value,
                            prev=attempts,
                        ),
                    }
                },
            ]
        )
        return codes is None

    def mark_running(self, batch_id: str, *, attempt: int, job_run_id: str, client_token: str, now: str) -> bool:
        """STARTING → RUNNING with ``job_run_id`` and the job run lookup item; False if already recorded."""
        job_run = {
            "attempt": attempt,
            "client_token": client_token,
            "state": "SUBMITTED",
            "started_at": now,
            "updated_at": now,
        }
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :running, #gpk = :gpk, job_run_id = :j, "
                        "job_runs.#j = :jr, updated_at = :now",
                        "ConditionExpression": "#s = :starting AND attempts = :a",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK, "#j": job_run_id},
                        "ExpressionAttributeValues": values(
                            running=BatchStatus.RUNNING.value,
                            gpk=f"BATCHES#{BatchStatus.RUNNING.value}",
                            j=job_run_id,
                            jr=job_run,
                            now=now,
                            starting=BatchStatus.STARTING.value,
                            a=attempt,
                        ),
                    }
                },
                {
                    "Put": {
                        "Item": to_item(
                            {
                                **job_run_key(job_run_id),
                                "type": "job_run",
                                "batch_id": batch_id,
                                "attempt": attempt,
                                "client_token": client_token,
                                "started_at": now,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PK},
                    }
                },
            ]
        )
        return codes is None

    def get_job_run(self, job_run_id: str) -> dict[str, Any] | None:
        """The job run lookup item (``batch_id``, ``attempt``, ``client_token``) or None if unknown."""
        return self._get(job_run_key(job_run_id))

    def finish_job_run(self, batch_id: str, *, job_run_id: str, state: str, new_status: BatchStatus, now: str) -> bool:
        """End the batch's RUNNING job run ``job_run_id`` and free the slot, atomically.

        ``new_status`` is SUCCEEDED, SEALED (retry: ``failures += 1``) or QUARANTINED (``failures += 1``). False if
        the batch is not RUNNING that job run any more (duplicate or stale event).
        """
        failed = new_status is not BatchStatus.SUCCEEDED
        update = (
            "SET #s = :new, #gpk = :gpk, job_runs.#j.#st = :state, job_runs.#j.updated_at = :now, updated_at = :now"
            + (", failures = failures + :one" if failed else ", finished_at = :now")
        )
        vals = {
            "new": new_status.value,
            "gpk": f"BATCHES#{new_status.value}",
            "state": state,
            "now": now,
            "running": BatchStatus.RUNNING.value,
            "j": job_run_id,
            "b": batch_id,
        }
        if failed:
            vals["one"] = 1
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": update,
                        "ConditionExpression": "#s = :running AND job_run_id = :j",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK, "#j": job_run_id, "#st": "state"},
                        "ExpressionAttributeValues": values(**vals),
                    }
                },
                _free_slot(batch_id, now),
            ]
        )
        return codes is None

    def fail_start(self, batch_id: str, *, attempt: int, error: str, quarantine: bool, now: str) -> bool:
        """A ``start_job_run`` call failed: STARTING → SEALED (retry later) or QUARANTINED, free the slot."""
        new_status = BatchStatus.QUARANTINED if quarantine else BatchStatus.SEALED
        codes = self._transact(
            [
                {
                    "Update": {
                        "Key": _key(batch_key(batch_id)),
                        "UpdateExpression": "SET #s = :new, #gpk = :gpk, failures = failures + :one, "
                        "last_error = :err, updated_at = :now",
                        "ConditionExpression": "#s = :starting AND attempts = :a",
                        "ExpressionAttributeNames": {"#s": "status", "#gpk": GSI_PK},
                        "ExpressionAttributeValues": values(
                            new=new_status.value,
                            gpk=f"BATCHES#{new_status.value}",
                            one=1,
                            err=error[:1000],
                            now=now,
                            starting=BatchStatus.STARTING.value,
                            a=attempt,
                        ),
                    }
                },
                _free_slot(batch_id, now),
            ]
        )
        return codes is None


__all__ = ["BatchStatus", "ImageStatus", "ManifestTable", "TransactionGaveUp", "batch_key", "job_run_key", "to_attr"]
