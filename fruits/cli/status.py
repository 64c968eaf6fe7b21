"""``fruits status``: what an operator asks first, from the manifest table and the lake.

Pending images and the age of the oldest, batches by state (job run ids, attempts), job runs with their batches
(issue 19: a job run takes every sealed batch waiting), the running job run and its age, quarantined batches, and
the lake's row counts (Iceberg snapshot summaries: no data file is read).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

LAKE_TABLES = ("features", "rejects", "batches")


def _age_seconds(timestamp: str | None, now: dt.datetime) -> float | None:
    """Seconds from an ISO-8601 UTC ``timestamp`` (as the manifest stores them) to ``now``; None if absent/bad."""
    if not timestamp:
        return None
    try:
        then = dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - (then if then.tzinfo else then.replace(tzinfo=dt.UTC))).total_seconds())


def lake_row_counts(lake_uri: str, catalog: str = "") -> dict[str, Any]:
    """Rows per lake table from the current Iceberg snapshot's ``total-records`` (0 for a missing table).

    Returns ``{"uri": lake_uri, "tables": {name: rows}}``, or ``{"uri": …, "error": one line}`` when the lake or
    its catalog cannot be reached (status must still show the manifest).
    """
    try:
        from spark_jobs.lakehouse import tables

        lake = tables.Lake.at(lake_uri, catalog or None)
        counts: dict[str, int] = {}
        for name in LAKE_TABLES:
            snapshot = lake.table(name, create=False).current_snapshot() if lake.exists(name) else None
            counts[name] = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
        return {"uri": lake_uri, "tables": counts}
    except Exception as err:  # any reason the lake is unreachable is shown, not raised
        return {"uri": lake_uri, "error": (str(err).splitlines() or [type(err).__name__])[0]}


def operator_status(pipeline: Any, *, now: dt.datetime | None = None, lake: bool = True) -> dict[str, Any]:
    """The status snapshot: :meth:`lambdas.pipeline.Pipeline.status` plus what an operator asks first.

    Added keys: ``oldest_pending`` (``recorded_at`` and ``age_s``, or None), ``batches_by_status`` (status →
    count), ``running`` (``batch_id`` = the run's lead, ``batch_ids`` = every batch of the run, ``images``,
    ``job_run_id``, ``attempt``, ``started_at``, ``age_s``; None when the slot is free), ``quarantined``
    (batches), ``lake`` (:func:`lake_row_counts`, when ``lake``). Ages in seconds. ``runs`` (job runs with their
    batches and images) comes from :meth:`lambdas.pipeline.Pipeline.status`.
    """
    now = now or dt.datetime.now(dt.UTC)
    snapshot = dict(pipeline.status())
    oldest = pipeline.table.pending_images(1) if snapshot["pending"] else []
    snapshot["oldest_pending"] = (
        {"key": oldest[0].get("key"), "recorded_at": oldest[0].get("recorded_at"),
         "age_s": _age_seconds(oldest[0].get("recorded_at"), now)} if oldest else None
    )  # fmt: skip
    batches = snapshot["batches"]
    snapshot["batches_by_status"] = dict(sorted(Counter(b["status"] for b in batches).items()))
    holder = snapshot["slot"].get("holder")
    running = None
    if holder:
        batch = next((b for b in batches if b["batch_id"] == holder), None) or pipeline.table.get_batch(holder) or {}
        job_run_id = batch.get("job_run_id")
        run = batch.get("job_runs", {}).get(job_run_id, {}) if job_run_id else {}
        started = run.get("started_at") or snapshot["slot"].get("since")
        members = batch.get("run_batches") or [{"batch_id": holder, "images": batch.get("image_count", 0)}]
        images = sum(int(member.get("images", 0)) for member in members)
        running = {"batch_id": holder, "status": batch.get("status"), "job_run_id": job_run_id,
                   "batch_ids": [member["batch_id"] for member in members], "images": images,
                   "attempt": run.get("attempt", batch.get("attempts")), "started_at": started,
                   "age_s": _age_seconds(started, now)}  # fmt: skip
    snapshot["running"] = running
    snapshot["quarantined"] = [b for b in batches if b["status"] == "QUARANTINED"]
    if lake:
        settings = pipeline.settings
        snapshot["lake"] = lake_row_counts(settings.lake_uri, settings.job_catalog)
    return snapshot


def _age(seconds: float | None) -> str:
    """``1h 02m``, ``3m 04s``, ``12s``; ``-`` for None."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def render(snapshot: dict[str, Any], console: Console) -> None:
    """Print :func:`operator_status`'s snapshot as a few lines and tables (rich)."""
    oldest = snapshot["oldest_pending"]
    console.print(f"[bold]pending images[/]: {snapshot['pending']}"
                  + (f" (oldest recorded {_age(oldest['age_s'])} ago: {oldest['key']})" if oldest else ""),
                  soft_wrap=True)  # fmt: skip
    counts = Table(title="Images")
    for status in snapshot["images"]:
        counts.add_column(status, justify="right")
    counts.add_row(*(str(n) for n in snapshot["images"].values()))
    console.print(counts)
    running = snapshot["running"]
    if running:
        others = running["batch_ids"][1:]
        more = f" + {len(others)} more ({', '.join(others)})" if others else ""
        console.print(f"[bold]running[/]: job run {running['job_run_id'] or '(starting)'} for batch "
                      f"{running['batch_id']}{more}, {running['images']} images ({running['status']}, attempt "
                      f"{running['attempt']}), started {_age(running['age_s'])} ago", soft_wrap=True)  # fmt: skip
    else:
        console.print("[bold]running[/]: no job run (slot free)")
    by_status = ", ".join(f"{status}={n}" for status, n in snapshot["batches_by_status"].items()) or "none"
    batches = Table(title=f"Batches ({len(snapshot['batches'])}: {by_status})")
    for column in ("batch", "status", "images", "attempts", "failures", "job run", "sealed at"):
        batches.add_column(column)
    runs = Table(title="Job runs")
    for column in ("job run", "state", "batches", "images", "attempt", "client token", "started at"):
        runs.add_column(column)
    for batch in snapshot["batches"]:
        style = "red" if batch["status"] == "QUARANTINED" else None
        batches.add_row(batch["batch_id"], batch["status"], str(batch.get("image_count") or batch.get("claimed", 0)),
                        str(batch.get("attempts", 0)), str(batch.get("failures", 0)), batch.get("job_run_id", ""),
                        batch.get("sealed_at", ""), style=style)  # fmt: skip
    for run in snapshot.get("runs", []):
        runs.add_row(run["job_run_id"], str(run.get("state")), " ".join(run["batch_ids"]), str(run["images"]),
                     str(run.get("attempt")), str(run.get("client_token")), str(run.get("started_at")))  # fmt: skip
    console.print(batches)
    console.print(runs)
    quarantined = snapshot["quarantined"]
    if quarantined:
        ids = ", ".join(b["batch_id"] for b in quarantined)
        hint = "re-run with `fruits start-job --batch-id ID` once the cause is fixed"
        console.print(f"[bold red]quarantined[/]: {ids} ({hint})", soft_wrap=True)
    lake = snapshot.get("lake")
    if lake and "tables" in lake:
        console.print(f"[bold]lake[/] {lake['uri']}: " + ", ".join(f"{n} {c} rows" for n, c in lake["tables"].items()),
                      soft_wrap=True)
    elif lake:
        console.print(f"[bold]lake[/] {lake['uri']}: not reachable ({lake['error']})", soft_wrap=True)
