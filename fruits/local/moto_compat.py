"""Local-mode fixes for moto (tests and the ``fruits demo`` moto server), installed together by :func:`install`.

1. Cheap TransactWriteItems rollback. moto 5 snapshots *every table a transaction names* with ``copy.deepcopy``
   before applying it, so each ``TransactWriteItems`` costs O(table size) and ingesting N images costs O(N²)
   (``bench/ingestion.py`` measures the ingest path; figures in bench/README.md). A transaction can
   only change the items it names, so snapshotting just those items and restoring them when moto cancels the
   transaction has the same semantics.
2. EMR Serverless job runs of an application that has none yet. moto (≤ 5.2.5) keeps job runs in a dict keyed by
   application id that gets its key only at the first ``StartJobRun``, so ``ListJobRuns`` / ``GetJobRun`` /
   ``CancelJobRun`` on an existing application with no job run raise ``ResourceNotFoundException: Application …
   does not exist``. EMR Serverless lists such an application's job runs as ``[]`` (and says ``JobRun … does not
   exist`` for an unknown job run); an unknown application still raises as before.
3. Cheap SQS retention check. For every message ``ReceiveMessage`` returns, moto checks the retention period by
   computing *all* the queue's attributes (``get_queue_attributes``), which counts the queue's messages, so a
   receive costs O(batch × queue length) and draining a queue holding N messages costs O(N²): with uploads
   overlapping ingestion, the demo's 3,600 queued notifications took minutes. The patched check reads the queue's
   ``MessageRetentionPeriod`` alone; same result. And the visible-message list and the delayed / in-flight counts
   behind every attribute read (each ``SendMessage``, so each S3 notification, reads them all) ask the clock once
   or twice per message (``datetime.utcfromtimestamp``); the patched ones read it once per call, same answers.
4. Empty-body requests that expect ``100 Continue`` (the local server is served by waitress). botocore sends
   ``Expect: 100-continue`` with every ``PutObject``, also a 0-byte one (``Content-Length: 0``). waitress (3.0.2)
   answers ``100 Continue`` and then marks the request incomplete again (``HTTPChannel.send_continue``), waiting
   for a body that never comes: the upload hangs until botocore's read timeout, for every retry. AWS accepts
   such objects. The patched ``send_continue`` keeps a request that has no body (no chunked transfer,
   ``Content-Length`` 0) complete, so it is served at once.
5. DynamoDB Query without sorting the whole table. moto's ``Table.query`` starts from ``all_items()``, which sorts
   *every item of the table* by its key (``DynamoType`` comparisons in Python), then keeps the matches and sorts
   those again by the query's own key order. So each Query costs O(n log n) in the table's size, and the ingest
   Lambda's queries made the demo's recording rate fall from 28 to 9 photos/s over 3,600 photos (py-spy: 72 % of
   the server's time in ``Table.query``/``all_items``). Inside a query the patched ``all_items`` returns the items
   unsorted, and for a query on the base table only the items under the queried partition key, as DynamoDB reads
   them. The matches are sorted by the query as before, by a total order on their keys, so results, pages and
   ``LastEvaluatedKey`` are unchanged.
6. The server's module list read once. For every request the moto server's dispatcher asks whether the ``Host``
   header names one of moto's service packages, listing moto's folder and calling ``isdir`` on each of its ~200
   entries (``moto.backends.list_of_moto_modules``): 0.6 ms per request, a sixth of the demo's ingest requests'
   dispatch. The folder does not change while the process runs: the patched function lists it once.

Never used on AWS (import moto only through the ``install*`` functions).
"""

from __future__ import annotations

import copy
import inspect
import threading
import types
from collections.abc import Callable
from typing import Any


def install() -> Callable[[], None]:
    """Install every fix of :data:`FIXES` in this process; returns a function that undoes them all."""
    undos = [install_fix() for install_fix in FIXES.values()]

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


def install_fast_sqs_retention_check() -> Callable[[], None]:
    """Patch moto's SQS backend: one attribute for the retention check, one clock read per message list (fix 3).

    A message is still valid while ``sent_timestamp / 1000 + MessageRetentionPeriod > now`` (seconds), as in moto.
    Returns a function that undoes the patch.
    """
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    original = SQSBackend.is_message_valid_based_on_retention_period

    def is_valid(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > unix_time()

    def messages(self: Any) -> list[Any]:  # Message.visible: now > visible_at; Message.delayed: now < delayed_until
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    originals = {"messages": Queue.messages,
                 "approximate_number_of_messages_not_visible": Queue.approximate_number_of_messages_not_visible,
                 "approximate_number_of_messages_delayed": Queue.approximate_number_of_messages_delayed}
    SQSBackend.is_message_valid_based_on_retention_period = is_valid
    Queue.messages = property(messages)
    Queue.approximate_number_of_messages_not_visible = property(not_visible)
    Queue.approximate_number_of_messages_delayed = property(delayed)

    def undo() -> None:
        SQSBackend.is_message_valid_based_on_retention_period = original
        for name, value in originals.items():
            setattr(Queue, name, value)

    return undo


def install_emr_serverless_empty_job_runs() -> Callable[[], None]:
    """Patch moto's EMR Serverless backend: an existing application without job runs lists ``[]`` (fix 2 above).

    Wraps ``list_job_runs``, ``get_job_run`` and ``cancel_job_run`` so that a known application gets its empty
    job run list before moto looks it up. Returns a function that undoes the patch.
    """
    from moto.emrserverless.models import EMRServerlessBackend

    names = ("list_job_runs", "get_job_run", "cancel_job_run")
    originals = {name: getattr(EMRServerlessBackend, name) for name in names}

    def with_job_run_list(original: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: Any, application_id: str, *args: Any, **kwargs: Any) -> Any:
            if application_id in self.applications:
                self.job_runs.setdefault(application_id, [])
            return original(self, application_id, *args, **kwargs)

        return method

    for name, original in originals.items():
        setattr(EMRServerlessBackend, name, with_job_run_list(original))

    def undo() -> None:
        for name, original in originals.items():
            setattr(EMRServerlessBackend, name, original)

    return undo


def install_fast_transaction_rollback() -> Callable[[], None]:
    """Patch moto's DynamoDB backend in this process (fix 1 above); returns a function that undoes the patch.

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


def install_waitress_empty_body_continue() -> Callable[[], None]:
    """Patch waitress so a request with ``Expect: 100-continue`` and no body is served at once (fix 4).

    A no-op (returns a no-op undo) when waitress is not installed (it only serves the local moto server).
    """
    try:
        from waitress.channel import HTTPChannel
    except ImportError:  # pragma: no cover - waitress is in the [local] extra
        return lambda: None
    original = HTTPChannel.send_continue

    def send_continue(self: Any) -> None:
        request = self.request
        no_body = request.completed and not request.chunked and request.content_length == 0
        original(self)
        if no_body:
            request.completed = True  # nothing more to read: the request is complete (waitress un-completes it)

    HTTPChannel.send_continue = send_continue  # type: ignore[method-assign]

    def undo() -> None:
        HTTPChannel.send_continue = original  # type: ignore[method-assign]

    return undo


def install_fast_dynamodb_query() -> Callable[[], None]:
    """Patch moto's DynamoDB ``Table.query`` so it does not sort the whole table first (fix 5 above).

    While a query runs on a thread, ``Table.all_items`` of that table returns its items unsorted (only the
    queried partition's items for a base-table query with a partition key); elsewhere (Scan, exports, other
    threads) it keeps moto's sorted result. Returns a function that undoes the patch.
    """
    from moto.dynamodb.models.table import Table

    original_query, original_all_items = Table.query, Table.all_items
    active = threading.local()  # .query: (table, hash key or None) of the query running on this thread

    def all_items(self: Any) -> list[Any]:
        current = getattr(active, "query", None)
        if current is None or current[0] is not self:
            return original_all_items(self)
        hash_key = current[1]
        if hash_key is not None and self.range_key_attr:
            return list(self.items.get(hash_key, {}).values())
        if self.range_key_attr:
            return [item for bucket in self.items.values() for item in bucket.values()]
        return list(self.items.values())

    signature = inspect.signature(original_query)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = signature.bind(self, *args, **kwargs).arguments  # moto passes index_name by position
        saved = getattr(active, "query", None)
        active.query = (self, None if call.get("index_name") else call.get("hash_key"))
        try:
            return original_query(self, *args, **kwargs)
        finally:
            active.query = saved

    Table.query, Table.all_items = query, all_items  # type: ignore[method-assign]

    def undo() -> None:
        Table.query, Table.all_items = original_query, original_all_items  # type: ignore[method-assign]

    return undo


def install_cached_moto_module_list() -> Callable[[], None]:
    """Patch ``moto.backends.list_of_moto_modules`` to list moto's folder once per process (fix 6 above); returns a
    function that undoes the patch."""
    from moto import backends

    original = backends.list_of_moto_modules
    modules = tuple(original())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules

    def undo() -> None:
        backends.list_of_moto_modules = original

    return undo


# Every fix of this module by name (fix numbers as in the module doc: 1–6), as :func:`install` applies them.
FIXES: dict[str, Callable[[], Callable[[], None]]] = {
    "fast_transaction_rollback": install_fast_transaction_rollback,
    "emr_serverless_empty_job_runs": install_emr_serverless_empty_job_runs,
    "fast_sqs_retention_check": install_fast_sqs_retention_check,
    "waitress_empty_body_continue": install_waitress_empty_body_continue,
    "fast_dynamodb_query": install_fast_dynamodb_query,
    "cached_moto_module_list": install_cached_moto_module_list,
}
