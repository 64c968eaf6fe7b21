"""Batch ids and batch sizing rules."""

from __future__ import annotations

import secrets

from lambdas.contracts import BATCH_ID_RE


def new_batch_id(seq: int, suffix: str | None = None) -> str:
    """Batch id ``b<seq, 6+ digits>-<8 hex>``, sortable in sealing order (``seq`` comes from the manifest table).

    The random suffix keeps ids unique if the table is ever recreated while the lake (where the id is a
    partition value) is kept. Raises ValueError for a negative ``seq`` or a suffix breaking the id pattern.
    """
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    batch_id = f"b{seq:06d}-{suffix if suffix is not None else secrets.token_hex(4)}"
    if not BATCH_ID_RE.match(batch_id):
        raise ValueError(f"invalid batch id {batch_id!r}")
    return batch_id


def threshold_claim_size(pending: int, threshold: int, max_images: int) -> int:
    """Images a threshold seal claims: the largest multiple of ``threshold`` ≤ ``pending``, capped at ``max_images``.

    0 means "do not seal". With ``pending`` just past the threshold this is exactly ``threshold``, so a steady
    stream gives batches of exactly ``threshold`` images however many ingest Lambdas race; a backlog (e.g. after
    ``reconcile`` records lost images) is sealed in fewer, bigger batches.
    """
    if threshold < 1 or max_images < threshold:
        raise ValueError(f"need 1 <= threshold <= max_images, got {threshold}, {max_images}")
    if pending < threshold:
        return 0
    return min(max_images, pending - pending % threshold)


def flush_claim_size(pending: int, max_images: int) -> int:
    """Images a flush claims: everything pending (≥ 1) up to ``max_images``; 0 when nothing is pending."""
    return max(0, min(pending, max_images))
