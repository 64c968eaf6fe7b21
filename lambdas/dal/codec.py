"""Python values ↔ DynamoDB attribute values (boto3's serializer; numbers come back as int or float)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def iso_utc(when: dt.datetime) -> str:
    """A timezone-aware ``datetime`` as stored: ISO-8601 UTC with microseconds and ``Z`` (sortable as text).

    Raises ValueError for a naive ``datetime`` (its time zone would be a guess).
    """
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: the clock must return timezone-aware UTC times")
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _storable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def to_attr(value: Any) -> dict[str, Any]:
    """One Python value → DynamoDB attribute value (floats as Decimal strings, datetimes via :func:`iso_utc`,
    also inside maps and lists)."""
    return _SERIALIZER.serialize(_storable(value))


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Python dict → DynamoDB item; keys whose value is None are left out (absent attribute)."""
    return {name: to_attr(value) for name, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """DynamoDB item → Python dict with int/float numbers; None stays None."""
    if item is None:
        return None
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in item.items()}


def values(**kwargs: Any) -> dict[str, Any]:
    """``ExpressionAttributeValues`` from keyword arguments: ``values(n=1)`` → ``{":n": {"N": "1"}}``."""
    return {f":{name}": to_attr(value) for name, value in kwargs.items()}
