"""Thin Lambda handlers (Powertools): parse the event, call :mod:`lambdas.pipeline`, log and emit metrics."""
