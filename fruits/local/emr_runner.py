"""Run EMR Serverless job runs locally: the real Spark entry point under ``spark-submit --master local[*]``.

moto records ``start_job_run`` requests but runs nothing (its job runs report SUCCESS at once). This
runner plays the EMR Serverless service: for each job run it has not executed yet it downloads the
``entryPoint`` (and ``--py-files``) from the (moto) bucket, runs ``spark-submit`` with the job run's
``entryPointArguments``, uploads the driver log under the job run's ``logUri``, and delivers the
"EMR Serverless Job Run State Change" event (SUCCESS or FAILED) to the real ``job_state`` handler.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from fruits.local.lambda_runtime import Handler, LocalLambdaContext
from lambdas.resources import EMR_EVENT_SOURCE, EMR_JOB_STATE_DETAIL_TYPE, REGION
from spark_jobs.storage import split_s3

# spark-submit settings that only make sense on EMR Serverless workers; the local run drops them.
EMR_ONLY_CONF_PREFIXES = (
    "spark.emr-serverless.",
    "spark.executor.",
    "spark.driver.cores",
    "spark.driver.memory",
    "spark.dynamicAllocation.",
    "spark.archives",
)


STAGE_PROGRESS = re.compile(rb"\[Stage (\d+):[=> ]*\((\d+) \+ \d+\) / (\d+)\]")


def last_stage_progress(log_path: Path, tail_bytes: int = 4096) -> tuple[int, int, int] | None:
    """``(stage id, tasks done, tasks total)`` of the last Spark console progress line in a driver log, or None.

    Spark's console progress bar (``spark.ui.showConsoleProgress``) writes ``[Stage 3:==>   (5 + 2) / 12]``
    (done + running / total), redrawn with carriage returns; only the last ``tail_bytes`` of the log are read.
    """
    try:
        with log_path.open("rb") as log:
            log.seek(max(0, log_path.stat().st_size - tail_bytes))
            matches = STAGE_PROGRESS.findall(log.read())
    except OSError:
        return None
    if not matches:
        return None
    stage, done, total = matches[-1]
    return int(stage), int(done), int(total)


@dataclass(frozen=True)
class JobRunOutcome:
    """One locally executed job run."""

    job_run_id: str
    name: str
    batch_id: str | None  # the job's (first) --batch-id argument
    state: str  # SUCCESS | FAILED
    seconds: float
    log_path: Path
    batch_ids: tuple[str, ...] = ()  # every --batch-id of the run (a job run takes one batch or several), in order


@dataclass(frozen=True)
class _Running:
    """A job run whose spark-submit process was started."""

    job_run: dict[str, Any]
    process: subprocess.Popen
    log_path: Path
    batch_ids: tuple[str, ...]
    started: float


@dataclass
class LocalEmrRunner:
    """Executes the job runs of one (moto) EMR Serverless application, oldest first, one at a time."""

    application_id: str
    job_state_handler: Handler
    work_dir: Path
    master: str = "local[*]"
    driver_memory: str = "4g"
    seen: set[str] = field(default_factory=set)
    outcomes: list[JobRunOutcome] = field(default_factory=list)
    # called every 0.5 s while a job run executes: (the run's batch ids, stage id, tasks done, tasks in the stage)
    on_progress: Callable[[tuple[str, ...], int, int, int], None] | None = None
    _running: _Running | None = field(default=None, init=False, repr=False)

    def new_job_runs(self) -> list[dict[str, Any]]:
        """Job runs of the application not executed yet, in creation order."""
        emr = boto3.client("emr-serverless")
        runs: list[dict[str, Any]] = []
        for page in emr.get_paginator("list_job_runs").paginate(applicationId=self.application_id):
            runs.extend(page["jobRuns"])
        runs.sort(key=lambda run: (run["createdAt"], run["id"]))
        return [run for run in runs if run["id"] not in self.seen]

    def run_pending(self, on_done: Callable[[JobRunOutcome], None] | None = None) -> list[JobRunOutcome]:
        """Execute job runs until none is left (``job_state`` may start the next one after each SUCCESS)."""
        done: list[JobRunOutcome] = []
        while runs := self.new_job_runs():
            for run in runs:
                outcome = self.execute(run["id"])
                done.append(outcome)
                if on_done:
                    on_done(outcome)
        return done

    def execute(self, job_run_id: str) -> JobRunOutcome:
        """Run one job run with spark-submit (blocking) and deliver its terminal state event to ``job_state``."""
        running = self._start(job_run_id)
        while running.process.poll() is None:
            time.sleep(0.5)
            self._report_progress(running)
        return self._finish(running)

    def poll(self, on_done: Callable[[JobRunOutcome], None] | None = None) -> bool:
        """Advance without blocking, like the service would between two looks: if the running job run's process
        has ended, deliver its state event (``job_state`` may start the next batch) and call ``on_done``; if no
        job run executes, start the oldest one not executed yet. One job run at a time, as the application's
        ``maxConcurrentRuns`` = 1. Returns True while a job run executes.
        """
        running = self._running
        if running is not None:
            if running.process.poll() is None:
                self._report_progress(running)
                return True
            self._running = None
            outcome = self._finish(running)
            if on_done:
                on_done(outcome)
        if runs := self.new_job_runs():
            self._running = self._start(runs[0]["id"])
        return self._running is not None

    def _start(self, job_run_id: str) -> _Running:
        self.seen.add(job_run_id)
        emr = boto3.client("emr-serverless")
        job_run = emr.get_job_run(applicationId=self.application_id, jobRunId=job_run_id)["jobRun"]
        submit = job_run["jobDriver"]["sparkSubmit"]
        run_dir = self.work_dir / job_run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        command = self.spark_submit_command(submit, run_dir)
        log_path = run_dir / "driver.log"
        batch_ids = tuple(arguments(submit.get("entryPointArguments", []), "--batch-id"))
        with log_path.open("w") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._env())
        return _Running(job_run, process, log_path, batch_ids, time.perf_counter())

    def _report_progress(self, running: _Running) -> None:
        if self.on_progress and (stage := last_stage_progress(running.log_path)):
            self.on_progress(running.batch_ids, *stage)

    def _finish(self, running: _Running) -> JobRunOutcome:
        returncode = running.process.wait()
        seconds = time.perf_counter() - running.started
        state = "SUCCESS" if returncode == 0 else "FAILED"
        job_run = running.job_run
        self._upload_log(job_run, running.log_path)
        first = running.batch_ids[0] if running.batch_ids else None
        outcome = JobRunOutcome(job_run["jobRunId"], job_run.get("name", ""), first, state, seconds,
                                running.log_path, running.batch_ids)
        self.outcomes.append(outcome)
        event = job_state_event(job_run, state, details=f"local spark-submit exit code {returncode}")
        self.job_state_handler(event, LocalLambdaContext("job_state"))
        return outcome

    def spark_submit_command(self, submit: dict[str, Any], run_dir: Path) -> list[str]:
        """The local ``spark-submit`` command line for a job run's ``sparkSubmit`` driver."""
        entry_point = fetch(submit["entryPoint"], run_dir)
        command = [
            str(Path(sys.executable).parent / "spark-submit"),
            "--master",
            self.master,
            "--driver-memory",
            self.driver_memory,
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.sql.session.timeZone=UTC",
            "--conf",  # "[Stage 3:==>   (5 + 2) / 12]" lines in the driver log: the demo's per-task progress
            "spark.ui.showConsoleProgress=true",
        ]
        tokens = shlex.split(submit.get("sparkSubmitParameters") or "")
        index = 0
        while index < len(tokens):
            option, value = tokens[index], tokens[index + 1] if index + 1 < len(tokens) else ""
            index += 2
            if option == "--py-files":
                command += ["--py-files", ",".join(str(fetch(uri, run_dir)) for uri in value.split(","))]
            elif option == "--conf" and not value.split("=", 1)[0].startswith(EMR_ONLY_CONF_PREFIXES):
                command += ["--conf", value]
        return [*command, str(entry_point), *submit.get("entryPointArguments", [])]

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        env["PYSPARK_PYTHON"] = sys.executable
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    @staticmethod
    def _upload_log(job_run: dict[str, Any], log_path: Path) -> None:
        monitoring = job_run.get("configurationOverrides", {}).get("monitoringConfiguration", {})
        log_uri = monitoring.get("s3MonitoringConfiguration", {}).get("logUri")
        if not log_uri or not log_uri.startswith("s3://"):
            return
        bucket, prefix = split_s3(log_uri)
        prefix = prefix.strip("/")
        job_path = f"applications/{job_run['applicationId']}/jobs/{job_run['jobRunId']}/SPARK_DRIVER/stdout"
        key = f"{prefix}/{job_path}" if prefix else job_path
        boto3.client("s3").upload_file(str(log_path), bucket, key)


def argument(arguments: list[str], option: str) -> str | None:
    """Value following ``option`` in an ``entryPointArguments`` list (``--opt value`` or ``--opt=value``)."""
    for index, token in enumerate(arguments):
        if token == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if token.startswith(f"{option}="):
            return token.split("=", 1)[1]
    return None


def arguments(values: list[str], option: str) -> list[str]:
    """Every value following ``option`` in an ``entryPointArguments`` list, in order (a job run repeats
    ``--manifest`` / ``--batch-id`` once per batch)."""
    out = []
    for index, token in enumerate(values):
        if token == option and index + 1 < len(values):
            out.append(values[index + 1])
        elif token.startswith(f"{option}="):
            out.append(token.split("=", 1)[1])
    return out


def fetch(uri: str, into: Path) -> Path:
    """Download an ``s3://`` URI into ``into`` (or return a local path as is). Raises boto3 errors."""
    if not uri.startswith("s3://"):
        return Path(uri.removeprefix("file://"))
    bucket, key = split_s3(uri)
    target = into / Path(key).name
    boto3.client("s3").download_file(bucket, key, str(target))
    return target


def job_state_event(job_run: dict[str, Any], state: str, details: str = "") -> dict[str, Any]:
    """An EventBridge "EMR Serverless Job Run State Change" event for ``job_run`` (real shape)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": f"local-{job_run['jobRunId']}-{state.lower()}",
        "detail-type": EMR_JOB_STATE_DETAIL_TYPE,
        "source": EMR_EVENT_SOURCE,
        "account": "123456789012",
        "time": now,
        "region": REGION,
        "resources": [],
        "detail": {
            "jobRunId": job_run["jobRunId"],
            "jobRunName": job_run.get("name", ""),
            "applicationId": job_run["applicationId"],
            "arn": job_run["arn"],
            "releaseLabel": job_run.get("releaseLabel", ""),
            "state": state,
            "previousState": "RUNNING",
            "createdBy": job_run.get("createdBy", "arn:aws:sts::123456789012:assumed-role/local"),
            "updatedAt": now,
            "createdAt": now,
            "stateDetails": details,
        },
    }


def temp_work_dir() -> Path:
    """A fresh temporary directory for job run files (entry points, logs)."""
    return Path(tempfile.mkdtemp(prefix="fruits-emr-"))
