"""Pure functions of the ingestion pipeline: plain arguments in, plain values out, no AWS calls."""
