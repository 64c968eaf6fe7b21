"""Benchmark — near-duplicates: the similarity distribution behind the default threshold, and the search's cost.

``python -m bench.near_duplicates [--sample-lake DIR] [--workdir DIR] [--sizes 1000,10000,100000] [--no-job]
[--no-search] [--codec [LAKE]] [--similar-photo PATH | --similar-synthetic ROWS]`` (not in ``make bench``: it
builds a 100k-row lake, ~1 GB, and runs the job twice). Sections not run keep their previous figures in
``bench/results/near_duplicates.json``.

1. **Sample distribution** (``--sample-lake``: a lake holding the 3,600 Fruits-360 Training photos of one model,
   e.g. ``fruits featurize --images ../shared/data/fruits-360-sample/Training --weights random:0``): the cosine of
   every pair of photos, raw and centred on the model's mean, for pairs of the same video (same class folder and
   same recording: Fruits-360 names the second recording of a fruit ``r_<frame>``), of the same class but the other
   video, and of different classes; each photo's nearest neighbour within its video and outside its class; the
   pairs at or above candidate thresholds. Rule for the default: the smallest threshold (0.001 steps) at which no
   pair of different classes remains.
2. **Search cost** against H rows of history (synthetic real-shaped vectors: ReLU of Gaussians, 2,048 float32 and
   150 PCA floats, written to a local Iceberg ``features`` table in 10k-row batch runs): a 500-photo batch searched
   as the job does (:func:`spark_jobs.lakehouse.near_duplicates.history_chunks` + ``pairs_above``: ``image_uri`` +
   ``features`` decoded chunk by chunk on a thread while the previous chunk is searched), wall and CPU of that,
   and read and compute timed apart, best of 2; beside it
   the same search over the 150 PCA coordinates (what it would cost if it could use them).
4. **``fruits similar``** (``--similar-photo``, a photo of ``--sample-lake``; or ``--similar-synthetic 3600``, a
   stored URI of a synthetic lake of that many rows built in the workdir): wall time of the command in a new
   process (imports and catalog load included), best of 3, with and without ``--model-id``.
5. **Codec** (``--codec [LAKE]``): the same 100k ``image_uri`` + ``features`` rows written as Parquet with zstd (the
   codec of every table before 2026-12-05) and uncompressed (``features`` since), by PyArrow as PyIceberg writes
   them; file size, and the seconds to read and convert the vectors (one thread, best of 3). The vectors are the
   real ones of LAKE, e.g. the demo's lake (drawn with replacement, each multiplied by 1 + 0.001 N(0, 1) so no two
   rows are equal), or the synthetic ones of section 2 without LAKE (those compress better: 38 % zeros).
3. **In a job run**: the real Spark job (``--weights random:0``, the machine's default engine) featurizes 500
   Fruits-360 photos into the lake holding 100k rows of history of the same model, after a warm-up run; the
   ``near_duplicates`` stage's seconds over the rest of the run = what the search adds to a batch run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.common import RESULTS_DIR, SAMPLE_DIR, pick_images, write_manifest, write_result
from bench.report import summary_row

MODEL_ID = "resnet50-random0-224"
DIM, K, BATCH = 2048, 150, 500
TARGET_SHARE = 0.10  # the target: the search adds <= 10 % to a 500-photo batch run at 100k rows
THRESHOLDS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.996, 0.997, 0.998, 0.999)
PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 99.9, 100)


def _video(uri: str) -> str:
    """``<class>/<recording>``: Fruits-360 frames ``r_<n>_100.jpg`` are the second recording of the fruit."""
    parts = uri.rsplit("/", 2)
    return f"{parts[-2]}/{'r' if parts[-1].startswith('r_') else 'a'}"


def sample_distribution(lake_dir: str, model_id: str | None = None) -> dict[str, Any]:
    """Section 1 of the module doc, over every pair of the model's rows of the lake at ``lake_dir``."""
    from spark_jobs.lakehouse import near_duplicates as nd
    from spark_jobs.lakehouse import tables

    lake = tables.Lake.at(lake_dir)
    model_id = model_id or tables.model_ids(lake)[0]
    rows = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("image_uri", "label", "features"))
    uris = rows.column("image_uri").to_pylist()
    x = nd.vectors_of(rows.column("features"))
    labels = np.array(rows.column("label").to_pylist())
    videos = np.array([_video(u) for u in uris])
    upper = np.triu_indices(len(uris), 1)
    same_video = videos[upper[0]] == videos[upper[1]]
    same_class = labels[upper[0]] == labels[upper[1]]
    kinds = {"same video": same_video, "same class, other video": same_class & ~same_video,
             "different classes": ~same_class}
    out: dict[str, Any] = {"lake": lake_dir, "model_id": model_id, "photos": len(uris), "classes": len(set(labels)),
                           "videos": len(set(videos))}
    for name, mean in (("raw", None), ("centred", x.astype(np.float64).mean(axis=0))):
        unit = nd.unit_rows(x, mean)
        sims = unit @ unit.T
        values = sims[upper]
        part: dict[str, Any] = {"pairs": {}, "at_or_above": {}}
        for kind, mask in kinds.items():
            part["pairs"][kind] = {"count": int(mask.sum()),
                                   "percentiles": dict(zip(map(str, PERCENTILES),
                                                           np.percentile(values[mask], PERCENTILES).round(4).tolist(),
                                                           strict=True))}
        np.fill_diagonal(sims, -2.0)
        in_video = np.where(videos[:, None] == videos[None, :], sims, -2.0).max(axis=1)
        other_class = np.where(labels[:, None] != labels[None, :], sims, -2.0).max(axis=1)
        part["nearest_in_video_median"] = round(float(np.median(in_video)), 4)
        part["nearest_other_class_median"] = round(float(np.median(other_class)), 4)
        for t in THRESHOLDS:
            part["at_or_above"][str(t)] = {kind: int((values[mask] >= t).sum()) for kind, mask in kinds.items()}
            part["at_or_above"][str(t)]["photos with a same-video neighbour"] = int((in_video >= t).sum())
        cross_max = float(values[~same_class].max())
        chosen = float(np.ceil(cross_max * 1000 + 1e-9) / 1000)
        part["different_classes_max"] = round(cross_max, 4)
        part["rule_threshold"] = chosen
        part["at_rule_threshold"] = {kind: int((values[mask] >= chosen).sum()) for kind, mask in kinds.items()}
        part["photos_with_a_near_duplicate_at_rule"] = int((in_video >= chosen).sum())
        out[name] = part
    return out


def _history_rows(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    x = np.maximum(rng.standard_normal((n, DIM), dtype=np.float32) + 0.3, 0).astype(np.float32)
    p = rng.standard_normal((n, K), dtype=np.float32)
    as_list = pa.list_(pa.float32())
    return pa.table({
        "image_uri": [f"s3://bench/images/history/{start + i:07d}.jpg" for i in range(n)],
        "label": [f"class{(start + i) % 24}" for i in range(n)],
        "features": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM).cast(as_list),
        "pca": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), K).cast(as_list),
        "pca_version": pa.array([1] * n, pa.int32()),
        "model_id": [MODEL_ID] * n,
        "ingested_at": pa.array([dt.datetime.now(dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
    })


def grow_history(lake_dir: str, have: int, want: int, seed: int = 0, step: int = 10_000) -> int:
    """Append synthetic rows of :data:`MODEL_ID` until the lake holds ``want`` (batch runs of <= ``step`` rows)."""
    from spark_jobs.lakehouse import tables

    lake = tables.Lake.at(lake_dir)
    rng = np.random.default_rng(seed + have)
    while have < want:
        n = min(step, want - have)
        batch_id = f"h{have:07d}"
        rows = _history_rows(have, n, rng).append_column("batch_id", pa.array([batch_id] * n))
        tables.replace_batch_rows(lake, tables.FEATURES, rows, batch_id=batch_id, model_id=MODEL_ID)
        have += n
    return have


def search_cost(lake_dir: str, threshold: float, repeats: int = 2) -> dict[str, float]:
    """Best-of-``repeats`` seconds of a 500-photo batch's search over the lake's rows as the job runs it
    (:func:`spark_jobs.lakehouse.near_duplicates.history_chunks` decoding one chunk ahead on a thread +
    ``pairs_above``): ``total`` (wall and CPU of that pipelined search), and apart ``read`` (the chunks only) and
    ``compute`` (the search over chunks already in memory); beside them the same search over the 150 PCA coordinates."""
    from spark_jobs.lakehouse import near_duplicates as nd
    from spark_jobs.lakehouse import tables

    lake = tables.Lake.at(lake_dir)
    rng = np.random.default_rng(99)
    batch = np.maximum(rng.standard_normal((BATCH, DIM), dtype=np.float32) + 0.3, 0)
    batch_pca = rng.standard_normal((BATCH, K), dtype=np.float32)
    mean = np.full(DIM, 0.5, dtype=np.float64)
    uris = [f"s3://bench/images/new/{i}.jpg" for i in range(BATCH)]
    best: dict[str, float] = {}

    def keep(key: str, wall: float, cpu: float) -> None:
        for name, value in ((key, time.perf_counter() - wall), (f"{key}_cpu", time.process_time() - cpu)):
            best[name] = min(best.get(name, float("inf")), round(value, 3))

    table = lake.table(tables.FEATURES, create=False)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        history = nd.history_chunks(lake, MODEL_ID, exclude_batch="new")
        pairs = nd.pairs_above(uris, batch, history, threshold, mean)
        keep("total", wall, cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        chunks = list(nd.history_chunks(lake, MODEL_ID, exclude_batch="new"))
        keep("read", wall, cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        nd.pairs_above(uris, batch, chunks, threshold, mean)
        keep("compute", wall, cpu)
        best["rows"], best["pairs"] = sum(len(c[0]) for c in chunks), len(pairs)
        del chunks
        wall, cpu = time.perf_counter(), time.process_time()
        pcs = table.scan(row_filter=nd.history_filter(MODEL_ID), selected_fields=("image_uri", "pca")).to_arrow()
        keep("pca_read", wall, cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        p = nd.vectors_of(pcs.column("pca"))
        for s in range(0, len(p), nd.CHUNK_ROWS):
            sims = nd.unit_rows(batch_pca) @ nd.unit_rows(p[s : s + nd.CHUNK_ROWS]).T
            np.nonzero(sims >= threshold)
        keep("pca_compute", wall, cpu)
    best["pca_total"] = round(best["pca_read"] + best["pca_compute"], 3)
    return best


def codec_cost(workdir: Path, sample_lake: str | None, rows: int = 100_000, step: int = 10_000) -> dict[str, Any]:
    """Section 5: size and read seconds of ``rows`` feature vectors as Parquet, zstd against uncompressed."""
    import pyarrow.parquet as pq

    from spark_jobs.lakehouse import tables, vector_scan

    rng = np.random.default_rng(5)
    real = None
    if sample_lake:
        lake = tables.Lake.at(sample_lake)
        real = vector_scan.read_model(lake, tables.model_ids(lake)[0])[1]

    def part(start: int, n: int) -> pa.Table:
        if real is None:
            x = np.maximum(rng.standard_normal((n, DIM), dtype=np.float32) + 0.3, 0).astype(np.float32)
        else:
            x = real[rng.integers(0, len(real), n)]
            x = (x * (1 + 1e-3 * rng.standard_normal(x.shape, dtype=np.float32))).astype(np.float32)
        return pa.table({"image_uri": [f"s3://bench/images/codec/{start + i:07d}.jpg" for i in range(n)],
                         "features": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
                         .cast(pa.list_(pa.float32()))})

    out: dict[str, Any] = {"rows": rows, "vectors": f"{sample_lake} (jittered)" if real is not None else "synthetic"}
    for codec in ("zstd", "none"):
        path = workdir / f"codec-{codec}.parquet"
        with pq.ParquetWriter(path, part(0, 1).schema, compression=codec) as writer:
            for start in range(0, rows, step):
                writer.write_table(part(start, min(step, rows - start)), row_group_size=step)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=["features"], use_threads=False):
                vector_scan.vectors_of(batch.column(0))
            best = min(best, time.perf_counter() - start)
        out["uncompressed" if codec == "none" else codec] = {"megabytes": round(path.stat().st_size / 1e6, 1),
                                                            "read_seconds": round(best, 3)}
        path.unlink()
    out["read_ratio"] = round(out["zstd"]["read_seconds"] / out["uncompressed"]["read_seconds"], 3)
    out["size_ratio"] = round(out["uncompressed"]["megabytes"] / out["zstd"]["megabytes"], 3)
    out["load"] = os.getloadavg()
    return out


def job_run(lake_dir: str, workdir: Path, threshold: float) -> dict[str, Any]:
    """Section 3: a warm-up job into a scratch lake, then the timed 500-photo job into ``lake_dir``."""
    from spark_jobs.job import JobConfig, run_batch
    from spark_jobs.session import local_spark_session

    spark = local_spark_session(app_name="bench-near-duplicates")
    images = pick_images(SAMPLE_DIR, "Training", per_class=21)[:BATCH]
    warm = write_manifest(images[:16], workdir / "warm.jsonl")
    run_batch(spark, JobConfig(str(warm), str(workdir / "warm-lake"), "warmup", "random:0", K,
                               near_duplicate_similarity=threshold))
    manifest = write_manifest(images, workdir / "batch.jsonl")
    start = time.perf_counter()
    report = run_batch(spark, JobConfig(str(manifest), lake_dir, "b500", "random:0", K,
                                        near_duplicate_similarity=threshold))
    wall = time.perf_counter() - start
    search = report["seconds"]["near_duplicates"]
    return {"wall_seconds": round(wall, 3), "near_duplicates_seconds": search, "photos": len(images),
            "stages": report["seconds"], "pairs": report["near_duplicates"]["pairs"],
            "share": round(search / max(wall - search, 1e-9), 4), "engine": report["engine"]}


def main(argv: list[str] | None = None) -> int:
    """Run the sections asked for and write ``bench/results/near_duplicates.json``."""
    from spark_jobs.lakehouse.near_duplicates import DEFAULT_MIN_SIMILARITY

    parser = argparse.ArgumentParser(prog="bench.near_duplicates", description=__doc__.splitlines()[0])
    parser.add_argument("--sample-lake", default=None, help="lake of the 3,600 Training photos (section 1)")
    parser.add_argument("--workdir", default="/tmp/bench-near-duplicates", help="scratch lake of section 2 and 3")
    parser.add_argument("--sizes", default="1000,10000,100000", help="history sizes (rows), increasing")
    parser.add_argument("--no-job", action="store_true", help="skip section 3 (the Spark job)")
    parser.add_argument("--no-search", action="store_true", help="skip sections 2 and 3")
    parser.add_argument("--similar-photo", default=None, help="a photo of --sample-lake: time `fruits similar`")
    parser.add_argument("--codec", nargs="?", const="", default=None, metavar="LAKE",
                        help="section 5: read cost of zstd vs uncompressed vectors (real ones from LAKE when given)")
    parser.add_argument("--similar-synthetic", type=int, default=None, metavar="ROWS",
                        help="time `fruits similar` on a stored URI of a synthetic lake of ROWS rows instead")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    previous = RESULTS_DIR / "near_duplicates.json"
    old = json.loads(previous.read_text()) if previous.is_file() else {}
    doc: dict[str, Any] = {**old, "benchmark": "near_duplicates", "description": __doc__.split("\n\n")[0],
                           "default_min_similarity": DEFAULT_MIN_SIMILARITY}
    sections: dict[str, list] = dict(old.get("sections", {}))
    rows: list = []
    if args.sample_lake:
        sample = doc["sample"] = sample_distribution(args.sample_lake)
        for name in ("raw", "centred"):
            part = sample[name]
            pct = {k: v["percentiles"] for k, v in part["pairs"].items()}
            rows.append(summary_row(f"sample, {name} cosine: median same video / same class other video / "
                                    "different classes",
                                    f"{pct['same video']['50']} / {pct['same class, other video']['50']} / "
                                    f"{pct['different classes']['50']}", "",
                                    note=f"{sample['photos']} photos, {sample['classes']} classes, "
                                         f"{sample['videos']} videos, model {sample['model_id']}"))
            at = part["at_rule_threshold"]
            rows.append(summary_row(f"sample, {name} cosine: smallest threshold with no pair of different classes",
                                    part["rule_threshold"], "",
                                    note=f"max different-class pair {part['different_classes_max']}; at it: "
                                         f"{at['same video']} same-video pairs, {at['same class, other video']} "
                                         f"same-class other-video pairs, {part['photos_with_a_near_duplicate_at_rule']}"
                                         " photos with a same-video near-duplicate"))
        sections["sample"], rows = rows, []
    similar_lake, photo, kind = args.sample_lake, args.similar_photo, "sample lake"
    if args.similar_synthetic:
        similar_lake, kind = str(workdir / "similar-lake"), "synthetic lake, 1 batch"
        grow_history(similar_lake, 0, args.similar_synthetic)  # idempotent: the same batch ids are replaced
        photo = "s3://bench/images/history/0000007.jpg"
    if photo and similar_lake:
        model_id = None if args.similar_synthetic else doc.get("sample", {}).get("model_id")
        doc["similar"] = {**similar_wall(similar_lake, photo, model_id), "lake_kind": kind}
        for key, value in doc["similar"].items():
            if key.endswith("seconds"):
                cpu = doc["similar"][key.replace("_seconds", "_cpu")]
                rows.append(summary_row(f"`fruits similar` wall, new process, {key.removesuffix('_seconds')}",
                                        value, "s", "<= 2", value <= 2,
                                        note=f"{doc['similar']['rows']} rows ({kind}), stored URI; best of 3; "
                                             f"CPU (user+sys) {cpu} s; "
                                             f"load {doc['similar']['load'][0]:.1f}"))
        sections["similar"], rows = rows, []
    if args.codec is not None:
        codec = doc["codec"] = codec_cost(workdir, args.codec or None)
        sections["codec"] = [summary_row(
            "read seconds of the features column, zstd / uncompressed", codec["read_ratio"], "x",
            note=f"{codec['rows']:,} rows of {codec['vectors']} vectors, one thread: zstd "
                 f"{codec['zstd']['read_seconds']} s ({codec['zstd']['megabytes']} MB), uncompressed "
                 f"{codec['uncompressed']['read_seconds']} s ({codec['uncompressed']['megabytes']} MB, "
                 f"{codec['size_ratio']}x the bytes); load {codec['load'][0]:.1f}")]
    if not args.no_search:
        _search_sections(args, workdir, doc, sections)
    doc["sections"] = sections
    doc["summary"] = [row for name in ("sample", "similar", "codec", "search", "job")
                      for row in sections.get(name, [])]
    write_result("near_duplicates", doc)
    for row in doc["summary"]:
        print(f"{row['metric']}: {row['value']} {row['unit']} {row['note']}")
    return 0


def similar_wall(lake_dir: str, photo: str, model_id: str | None) -> dict[str, Any]:
    """Section 4: best-of-3 wall seconds of ``fruits similar`` in a new process, with and without --model-id."""
    import subprocess
    import sys

    from spark_jobs.lakehouse import tables

    lake = tables.Lake.at(lake_dir)
    model_id = model_id or tables.model_ids(lake)[0]
    n = tables.scan(lake, tables.FEATURES, model_id=model_id, columns=("image_uri",)).num_rows
    base = [sys.executable, "-m", "fruits.cli.main", "similar", photo, "--lake", lake_dir, "-k", "10"]
    out: dict[str, Any] = {"rows": n, "photo": photo}
    import resource

    for name, argv in (("with_model_id_seconds", [*base, "--model-id", model_id]), ("auto_model_seconds", base)):
        best, cpu = float("inf"), float("inf")
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out[name] = round(best, 3)
        out[name.replace("_seconds", "_cpu")] = round(cpu, 3)
    out["load"] = os.getloadavg()
    return out


def _search_sections(args: argparse.Namespace, workdir: Path, doc: dict[str, Any], sections: dict[str, list]) -> None:
    from spark_jobs.lakehouse.near_duplicates import DEFAULT_MIN_SIMILARITY

    rows: list = []
    sizes = [int(s) for s in args.sizes.split(",")]
    lake_dir = str(workdir / "history-lake")
    have, costs = 0, {}
    for size in sizes:
        start = time.perf_counter()
        have = grow_history(lake_dir, have, size)
        build = time.perf_counter() - start
        costs[size] = search_cost(lake_dir, DEFAULT_MIN_SIMILARITY)
        costs[size]["build_seconds"] = round(build, 1)
        costs[size]["load"] = os.getloadavg()
        c = costs[size]
        rows.append(summary_row(f"search of a {BATCH}-photo batch vs {size:,} rows, full vectors (read and compute "
                                "overlapped)", c["total"], "s",
                                note=f"CPU {c['total_cpu']} s; apart: read {c['read']} s, compute {c['compute']} s; "
                                f"PCA "
                                f"coordinates instead: {c['pca_total']} s (read {c['pca_read']} + compute "
                                f"{c['pca_compute']}); load {c['load'][0]:.1f}"))
    doc["search"] = {str(k): v for k, v in costs.items()}
    sections["search"], rows = rows, []
    if not args.no_job:
        job = doc["job"] = job_run(lake_dir, workdir, DEFAULT_MIN_SIMILARITY)
        job["history_rows"] = have
        job["load"] = os.getloadavg()
        rows.append(summary_row(f"near-duplicate stage / rest of a {BATCH}-photo job run, {have:,} rows of history",
                                job["share"], "", f"<= {TARGET_SHARE}", job["share"] <= TARGET_SHARE,
                                note=f"{job['near_duplicates_seconds']} s of {job['wall_seconds']} s "
                                     f"({job['engine']}); load {job['load'][0]:.1f}"))
        rest = job["wall_seconds"] - job["near_duplicates_seconds"]
        for size in sizes[:-1]:  # the smaller histories: their search over this run's rest (not run as jobs)
            share = round(costs[size]["total"] / rest, 4)
            costs[size]["share_of_job_rest"] = share
            rows.append(summary_row(f"search / rest of the {BATCH}-photo job run, {size:,} rows of history", share,
                                    "", f"<= {TARGET_SHARE}", share <= TARGET_SHARE,
                                    note=f"{costs[size]['total']} s (section 2) over {rest:.1f} s"))
        budget = TARGET_SHARE * rest
        per_row = (costs[sizes[-1]]["total"] - costs[sizes[0]]["total"]) / max(sizes[-1] - sizes[0], 1)
        fixed = costs[sizes[0]]["total"] - per_row * sizes[0]
        crossover = int((budget - fixed) / per_row) if per_row > 0 else None
        doc["crossover_rows"] = crossover
        rows.append(summary_row("history rows at which exact search reaches 10 % of the batch run", crossover,
                                "rows", note=f"linear fit of the search times: {fixed:.3f} s + {per_row * 1e6:.2f} "
                                f"us/row vs a budget of {budget:.2f} s (10 % of the rest of this job run)"))
        sections["job"] = rows


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

