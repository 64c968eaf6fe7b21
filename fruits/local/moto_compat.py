"""Local-mode helper for moto (tests and the ``fruits demo`` moto server): cheap TransactWriteItems rollback.

moto 5 snapshots *every table a transaction names* with ``copy.deepcopy`` before applying it, so each
``TransactWriteItems`` costs O(table size) and ingesting N images costs O(N²) (measured here: 1,000 images through
the ingest handler took ~190 s, ~20 s with this patch). A transaction can only change the items it names, so
snapshotting just those items and restoring them when moto cancels the transaction has the same semantics.

Never used on AWS (import moto only through :func:`install_fast_transaction_rollback`).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any


def install_fast_transaction_rollback() -> Callable[[], None]:
    """Patch moto's DynamoDB backend in this process; returns a function that undoes the patch.

    Requires moto ≥ 5.1 (``DynamoDBBackend.transact_write_items`` + ``Table.items[hash][range]``).
    """
    import moto.dynamodb.models as ddb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = ddb_models.DynamoDBBackend.transact_write_items
    original_copy = ddb_models.copy

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        snapshots = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            names = [name for name in (table.hash_key_attr, table.range_key_attr) if name]
            key = op.get("Key") or {name: op["Item"][name] for name in names}
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            bucket = table.items.get(hash_value)
            current = bucket.get(range_value) if isinstance(bucket, dict) and range_value is not None else bucket
            snapshots.append((table, hash_value, range_value, copy.deepcopy(current)))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(snapshots):
                if range_value is None:
                    if item is None:
                        table.items.pop(hash_value, None)
                    else:
                        table.items[hash_value] = item
                elif item is None:
                    table.items[hash_value].pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = item
            raise

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    ddb_models.copy = types.SimpleNamespace(deepcopy=deepcopy)
    ddb_models.DynamoDBBackend.transact_write_items = transact_write_items

    def undo() -> None:
        ddb_models.copy = original_copy
        ddb_models.DynamoDBBackend.transact_write_items = original

    return undo
