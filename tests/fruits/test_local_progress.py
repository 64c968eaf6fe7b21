"""SparkProgress: stage bars from Spark's StatusTracker, images estimated from the widest stage's tasks."""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO

from rich.console import Console

from fruits.local.progress import SparkProgress


@dataclass
class StageInfo:
    name: str
    numTasks: int
    numCompletedTasks: int


class FakeTracker:
    """The two StatusTracker calls SparkProgress uses, with stages set by the test."""

    def __init__(self) -> None:
        self.stages: dict[int, StageInfo] = {}

    def getActiveStageIds(self) -> list[int]:
        return list(self.stages)

    def getStageInfo(self, stage_id: int) -> StageInfo | None:
        return self.stages.get(stage_id)


class FakeContext:
    def __init__(self, tracker: FakeTracker) -> None:
        self._tracker = tracker

    def statusTracker(self) -> FakeTracker:
        return self._tracker


def test_stage_and_image_bars_follow_task_progress() -> None:
    # GIVEN a 100-image batch whose featurize stage has 8 tasks, 2 done
    tracker = FakeTracker()
    tracker.stages[3] = StageInfo("toPandas at job.py:10", 8, 2)
    console = Console(file=StringIO(), width=120)
    with SparkProgress(FakeContext(tracker), 100, console, interval_s=60) as progress:
        # WHEN the tracker is polled
        progress.poll_once()
        bars = {task.description: task for task in progress._progress.tasks}
        # THEN the stage bar shows 2/8 tasks and the images bar a quarter of the images
        assert (bars["stage 3: toPandas"].completed, bars["stage 3: toPandas"].total) == (2, 8)
        assert bars["images (from task progress)"].completed == 25
        # WHEN the stage ends and a 1-task stage runs
        tracker.stages = {4: StageInfo("treeReduce", 1, 0)}
        progress.poll_once()
        bars = {task.description: task for task in progress._progress.tasks}
        # THEN the finished stage's bar is full, and so is the images bar (the widest stage is over)
        assert bars["stage 3: toPandas"].completed == 8 and bars["stage 4: treeReduce"].total == 1
        assert bars["images (from task progress)"].completed == 100
    # and a run that ends well shows every image done
    assert bars["images (from task progress)"].total == 100
    assert {task.description: task.completed for task in progress._progress.tasks}["images (from task progress)"] == 100
