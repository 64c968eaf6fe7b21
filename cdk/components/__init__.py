"""The stack's constructs, one concern each: storage, manifest table, processing, ingestion, monitoring, query."""
