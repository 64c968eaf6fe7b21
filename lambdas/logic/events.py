"""S3 event notifications (as SQS message bodies) → the changes the pipeline applies; malformed ones refused."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event

from lambdas.logic.keys import ImageRef, decode_event_key


class MalformedRecord(ValueError):
    """An SQS message that is not an S3 event notification the pipeline can process."""


def s3_changes(body_text: Any) -> list[tuple[str, ImageRef]]:
    """The ``(eventName, ImageRef)`` of each S3 record of one SQS message body (``str``, or already parsed);
    ``[]`` only for the ``s3:TestEvent`` S3 sends when a notification rule is saved.

    ``ImageRef.key`` is decoded (:func:`lambdas.logic.keys.decode_event_key`), ``event_time`` is the record's
    ``eventTime``. Raises :class:`MalformedRecord` when the body is not JSON, not an S3 notification, or misses a
    field the pipeline needs (bucket, key, event name).
    """
    try:
        body = json.loads(body_text) if isinstance(body_text, str | bytes) else body_text
        if not isinstance(body, dict):
            raise MalformedRecord("the body is not a JSON object")
        if body.get("Event") == "s3:TestEvent":
            return []
        changes = []
        for s3_record in S3Event(body).records:  # "Records" missing: KeyError; empty: refused below
            obj, event = s3_record.s3.get_object, s3_record.event_name
            bucket, key = s3_record.s3.bucket.name, obj.key
            if not all(isinstance(value, str) and value for value in (bucket, key, event)):
                raise MalformedRecord("bucket name, object key and event name must be non-empty strings")
            ref = ImageRef(
                bucket,
                decode_event_key(key),
                str(obj.get("eTag") or ""),
                int(obj.get("size") or 0),
                obj.get("versionId"),
                sequencer=obj.get("sequencer"),
                event_time=s3_record.get("eventTime"),
            )
            changes.append((event, ref))
        if not changes:
            raise MalformedRecord("no S3 record")
        return changes
    except MalformedRecord:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # json.JSONDecodeError is a ValueError
        raise MalformedRecord(f"{type(err).__name__}: {err}") from err
