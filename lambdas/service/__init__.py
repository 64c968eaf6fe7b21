"""The ingestion service as use-case modules, composed into :class:`lambdas.pipeline.Pipeline`.

``batching`` (ingest, seal), ``job_runs`` (start, job state events), ``repair`` (flush, reconcile), ``admin``
(CLI-only operations), over ``base`` (settings, table, clients, clock) with ``outcomes`` (result records).
"""
