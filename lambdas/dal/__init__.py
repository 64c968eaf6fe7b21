"""DynamoDB access of the ingestion pipeline (item shapes documented in :mod:`lambdas.dal.manifest_table`)."""

from lambdas.dal.manifest_table import BatchStatus, ImageStatus, ManifestTable, TransactionGaveUp

__all__ = ["BatchStatus", "ImageStatus", "ManifestTable", "TransactionGaveUp"]
