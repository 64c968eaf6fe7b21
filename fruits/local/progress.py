"""Live progress of a local Spark run: one bar per active stage (tasks done/total, ETA) and the images it covers.

A daemon thread polls Spark's ``StatusTracker`` (``SparkContext.statusTracker()``: active stage ids, and per stage
``numTasks``/``numCompletedTasks``) every ``interval_s`` and draws it with rich. The images bar is the batch's image
count times the completed fraction of the tasks of the widest stage seen so far (the featurize pass: one task per
slice of the manifest), so it is an estimate between task boundaries, exact at the end.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bars(console: Console | None = None, *, transient: bool = False) -> Progress:
    """The rich columns used for long local work: description, bar, done/total, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


class SparkProgress:
    """Context manager showing the progress of the Spark jobs run inside it (``with SparkProgress(sc, n): ...``).

    Args:
        spark_context: the local ``SparkContext`` (its ``statusTracker()`` is polled).
        images: images in the batch (the images bar's total).
        console: where to draw (default: a new rich Console).
        interval_s: polling period in seconds.
    """

    def __init__(self, spark_context: Any, images: int, console: Console | None = None, interval_s: float = 0.5):
        self._tracker = spark_context.statusTracker()
        self._images = images
        self._interval_s = interval_s
        self._progress = progress_bars(console)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="spark-progress", daemon=True)
        self._stage_tasks: dict[int, Any] = {}  # stage id → rich task id
        self._stage_totals: dict[int, int] = {}  # stage id → numTasks
        self._widest = (-1, 0, 0)  # (stage id, numTasks, numCompletedTasks) of the widest stage seen
        self._images_task: Any = None

    def __enter__(self) -> SparkProgress:
        self._progress.start()
        self._images_task = self._progress.add_task("images (from task progress)", total=self._images)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll_once()
        if kind is None:
            self._progress.update(self._images_task, completed=self._images)
        self._progress.stop()

    def _poll(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.poll_once()
            except Exception:
                return

    def poll_once(self) -> None:
        """Read the active stages once and update the bars (also called at exit for the final state)."""
        for stage_id in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(stage_id)
            if info is None:
                continue
            total, done = int(info.numTasks), int(info.numCompletedTasks)
            if stage_id not in self._stage_tasks:
                name = str(info.name).split(" at ")[0][:20]
                self._stage_tasks[stage_id] = self._progress.add_task(f"stage {stage_id}: {name}", total=total)
            self._progress.update(self._stage_tasks[stage_id], completed=done, total=total)
            self._stage_totals[stage_id] = total
            if stage_id == self._widest[0] or total > self._widest[1]:
                self._widest = (stage_id, total, done)
        active = set(self._tracker.getActiveStageIds())
        for stage_id, task in self._stage_tasks.items():  # stages no longer active are over: fill their bar
            if stage_id not in active:
                self._progress.update(task, completed=self._stage_totals[stage_id])
                if stage_id == self._widest[0]:
                    self._widest = (stage_id, self._stage_totals[stage_id], self._stage_totals[stage_id])
        _, total, done = self._widest
        if total:
            self._progress.update(self._images_task, completed=min(self._images, round(self._images * done / total)))
