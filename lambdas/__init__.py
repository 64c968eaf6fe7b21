"""Fruits! ingestion: Lambda handlers, logic, data access, the `fruits` CLI and the local (moto) runner."""
