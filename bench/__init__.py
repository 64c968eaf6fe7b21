"""Benchmarks of the Fruits! pipeline (issue 6): throughput, incremental cost, ingestion cost, faster mode,
feature quality and a cost model. Run all of them with ``python -m bench.run_all`` (``make bench``); each writes
``bench/results/<name>.json`` and the table in ``bench/README.md`` is regenerated from those files.

Benchmarks report ratios measured side by side in one run; they are never asserted in tests.
"""
