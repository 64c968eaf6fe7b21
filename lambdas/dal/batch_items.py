"""Manifest table: batch items (reserve, claim images, release, seal, list, re-queue)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from botocore.exceptions import ClientError

from lambdas.dal.codec import from_item, to_item, values
from lambdas.dal.records import Batch
from lambdas.dal.table_core import (
    COUNTER_KEY,
    GSI_PK,
    GSI_SK,
    MAX_CLAIM_CHUNK,
    PK,
    BatchStatus,
    ImageStatus,
    TableCore,
    _key,
    batch_key,
    claim_update,
)


class BatchItems(TableCore):
    """Batch operations (see :mod:`lambdas.dal.manifest_table` for item shapes)."""

    # --- batches -------------------------------------------------------------------------------------
    def reserve_batch(
        self, *, batch_id: str, seq: int, expected_seq: int, size: int, reason: str, now: dt.datetime
    ) -> bool:
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
            items += [claim_update(image, batch_id, gsi_pk=f"BATCH#{batch_id}") for image in todo]
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

    def release_shortfall(self, batch_id: str, remaining: int, *, now: dt.datetime) -> bool:
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

    def seal_batch(self, batch_id: str, *, image_count: int, manifest_uri: str, now: dt.datetime) -> bool:
        """CLAIMING → SEALED once fully claimed (``remaining = 0``, ``claimed = image_count``); False otherwise."""
        return self._transition(
            batch_id,
            BatchStatus.SEALED,
            expect="#s = :claiming AND remaining = :zero AND claimed = :n",
            now=now,
            set_clause="image_count = :n, manifest_uri = :m, sealed_at = :now",
            n=image_count,
            m=manifest_uri,
            claiming=BatchStatus.CLAIMING.value,
            zero=0,
        )

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch item (strongly consistent) or None."""
        return self._get(batch_key(batch_id))

    def batch(self, batch_id: str) -> Batch | None:
        """The batch as a typed record (strongly consistent) or None."""
        item = self._get(batch_key(batch_id))
        return Batch.from_item(item) if item else None

    def batches(self, batch_ids: list[str]) -> list[Batch]:
        """The batches ``batch_ids`` as typed records, strongly consistent, in the order given (unknown ids left
        out): BatchGetItem, 100 keys per call, unprocessed keys retried with jittered backoff."""
        found: dict[str, Batch] = {}
        unique = list(dict.fromkeys(batch_ids))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [_key(batch_key(batch_id)) for batch_id in unique[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            attempt = 0
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    batch = Batch.from_item(from_item(raw) or {})
                    found[batch.batch_id] = batch
                request = response.get("UnprocessedKeys") or {}
                if request:
                    self._sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
                    attempt += 1
        return [found[batch_id] for batch_id in unique if batch_id in found]

    def batches_by_status(self, status: BatchStatus, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Batches in ``status``, oldest (lowest batch id) first (GSI, eventually consistent)."""
        return list(self._query_gsi(f"BATCHES#{status.value}", limit=limit))

    def all_batches(self) -> list[dict[str, Any]]:
        """Every batch, sorted by batch id."""
        found = [batch for status in BatchStatus for batch in self.batches_by_status(status)]
        return sorted(found, key=lambda batch: batch["batch_id"])

    def requeue_batch(self, batch_id: str, *, now: dt.datetime) -> bool:
        """Manual re-run: SUCCEEDED / QUARANTINED / SEALED → SEALED with ``failures = 0`` (False otherwise)."""
        return self._transition(
            batch_id,
            BatchStatus.SEALED,
            expect="#s IN (:succeeded, :quarantined, :sealed)",
            now=now,
            set_clause="failures = :zero",
            zero=0,
            succeeded=BatchStatus.SUCCEEDED.value,
            quarantined=BatchStatus.QUARANTINED.value,
            sealed=BatchStatus.SEALED.value,
        )
