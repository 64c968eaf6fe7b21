"""Compact a ``pca/`` tree written before format 2 (``fruits migrate-lake``), in place and re-runnable.

Legacy layout per model: ``v<N>.json`` (metadata + the whole ledger), ``v<N>-<run>.npz`` (n, mean, the (d, d) M2,
components, explained variance: ~36 MB at d = 2,048), ``batch_stats/`` and ``erase_stats/`` (a (d, d) M2 per batch
run / erasure). Each legacy version becomes a format-2 version (:mod:`spark_jobs.pca.versions`): a fit file (float32
components, mean), a small JSON (parent = the previous version), and a packed state for the latest version and the
checkpoints only; then the legacy npz and the statistics folders are deleted and ``LATEST.json`` is written.
Order per version: new files, then the JSON replaced atomically, then the old npz deleted, so a run killed at any
point leaves a readable tree and the next run finishes it. Run it while no job commits to the lake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spark_jobs import storage
from spark_jobs.pca import versions as pca


@dataclass(frozen=True)
class PcaCompaction:
    """Per model: legacy versions converted, statistics files deleted, bytes of ``pca/<model_id>/`` before/after."""

    model_id: str
    versions: int
    stats_files_deleted: int
    bytes_before: int
    bytes_after: int


def _tree_bytes(folder: str) -> int:
    total = sum(storage.size(storage.join(folder, n)) for n in storage.list_names(folder))
    return total + sum(_tree_bytes(storage.join(folder, d)) for d in storage.list_dirs(folder))


def _convert(lake: str, model_id: str, meta: dict, previous: int | None, keep_state: bool) -> None:
    root = pca.model_dir(lake, model_id)
    old = pca.load_version(lake, model_id, int(meta["version"]))
    assert old is not None
    version = pca.PcaVersion(model_id, old.version, old.batch_id, old.run_id, old.state, old.fit.stored(), meta["kind"],
                             previous, meta.get("created_at", ""), (0.0, 0.0), {"migrated": True})
    storage.write_bytes(storage.join(root, version.fit_file()), pca.fit_bytes(version))
    if keep_state:
        storage.write_bytes(storage.join(root, version.state_file()), version.state.to_packed_bytes())
    body = json.dumps(version.metadata(), indent=1).encode()
    storage.write_bytes(storage.join(root, f"v{version.version:06d}.json"), body)  # atomic replace
    storage.delete(storage.join(root, meta["state_file"]))


def compact_pca_tree(lake: str) -> list[PcaCompaction]:
    """Convert every legacy PCA version under ``<lake>/pca/`` to format 2 (module doc); [] when there is none.

    Driver memory: one legacy version (a (d, d) float64 state) at a time.
    """
    results = []
    for model_id in storage.list_dirs(storage.join(lake, "pca")):
        root = pca.model_dir(lake, model_id)
        before = _tree_bytes(root)
        names = storage.list_names(root)
        numbers = sorted(int(m.group(1)) for m in map(pca.VERSION_JSON.match, names) if m)
        metas = {v: pca.read_metadata(lake, model_id, v) for v in numbers}
        legacy = [v for v in numbers if pca.is_legacy(metas[v])]
        latest_legacy = legacy[-1] if legacy else None
        pointer = pca.latest_version(lake, model_id)
        if pointer is not None and not storage.exists(storage.join(root, pca.POINTER)):  # first: the fallback
            # listing finds legacy versions only, and they are about to change format
            storage.write_bytes(storage.join(root, pca.POINTER), json.dumps({"version": pointer}).encode())
        for index, number in enumerate(legacy):
            previous = legacy[index - 1] if index else None
            last = number == latest_legacy and (pointer is None or pointer <= number)
            _convert(lake, model_id, metas[number], previous, last or number % pca.CHECKPOINT_EVERY == 0)
        stats_deleted = 0
        for folder in ("batch_stats", "erase_stats"):
            for name in storage.list_names(storage.join(root, folder)):
                storage.delete(storage.join(root, folder, name))
                stats_deleted += 1
        if legacy or stats_deleted:
            results.append(PcaCompaction(model_id, len(legacy), stats_deleted, before, _tree_bytes(root)))
    return results
