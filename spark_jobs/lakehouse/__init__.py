"""The Iceberg lake: tables and commits (``tables``), liveness of image versions (``liveness``), GDPR
erasure (``erasure``), near-duplicate pairs (``near_duplicates``), batch reports and readers
(``reports``), time-to-feature (``time_to_feature``). Not named ``lake``: .gitignore and ruff skip
every directory of that name (the local lakes)."""
