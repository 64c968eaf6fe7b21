"""Issue 19 in the synthesized stack: JOB_MAX_IMAGES on the Lambdas, Spark dynamic allocation in the job's
settings, the optional warm pool (pre-initialized capacity), and the backlog widgets and alarm."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from .conftest import Synthesized
from .test_stack import _functions


@pytest.fixture(scope="module")
def warm_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack synthesized with a warm pool of 1 driver + 2 executors and an explicit cap of 5,000 images per run."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from cdk.app import build_app, cdk_json_context

    outdir: Path = tmp_path_factory.mktemp("cdk-warm.out")
    app = App(outdir=str(outdir), context={**cdk_json_context(), "warmPool": "1x2", "jobMaxImages": "5000"})
    built = build_app(app)
    template = Template.from_stack(built.stack)  # fails on any unacknowledged cdk-nag finding
    return Synthesized(built=built, template=template, resources=template.to_json()["Resources"], outdir=outdir)


def _conf(spark_submit_parameters: str) -> dict[str, str]:
    """``--conf k=v`` pairs of a sparkSubmitParameters string."""
    tokens = shlex.split(spark_submit_parameters)
    return dict(tokens[i + 1].split("=", 1) for i, token in enumerate(tokens) if token == "--conf")


def _application(s: Synthesized) -> dict[str, Any]:
    (app,) = s.of_type("AWS::EMRServerless::Application").values()
    return app["Properties"]


def _dashboard(s: Synthesized) -> dict[str, Any]:
    (dashboard,) = s.of_type("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else "token" for part in parts))


def test_job_max_images_context_reaches_every_lambda_that_starts_job_runs(synthesized: Synthesized,
                                                                          warm_stack: Synthesized) -> None:
    # GIVEN the default stack (no jobMaxImages: derived, 20,000) and one with -c jobMaxImages=5000
    # WHEN the Lambdas' environments are read
    for stack, expected in ((synthesized, "20000"), (warm_stack, "5000")):
        functions = _functions(stack)
        # THEN every handler (each may seal and start a job run) gets JOB_MAX_IMAGES with the context's value
        assert {name: f["Properties"]["Environment"]["Variables"]["JOB_MAX_IMAGES"] for name, f in functions.items()} \
            == dict.fromkeys(("ingest", "job_state", "flush", "tick", "reconcile"), expected)
    assert synthesized.built.config.job_max_images == 20_000


def test_job_runs_use_dynamic_allocation_up_to_the_application_maximum(synthesized: Synthesized) -> None:
    # GIVEN the default stack (16 vCPU / 64 GB: a driver + 3 executors of 4 vCPU / 16 GB)
    env = _functions(synthesized)["job_state"]["Properties"]["Environment"]["Variables"]
    # WHEN the Spark settings the Lambdas send with every job run are parsed
    conf = _conf(env["SPARK_SUBMIT_PARAMETERS"])
    # THEN dynamic allocation starts on one executor, keeps one, and may take the whole application
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert conf["spark.dynamicAllocation.minExecutors"] == conf["spark.dynamicAllocation.initialExecutors"] == "1"
    assert conf["spark.executor.instances"] == "1"
    assert conf["spark.dynamicAllocation.maxExecutors"] == "3"
    # AND the driver + maxExecutors workers fit the application's maximum capacity exactly
    workers = 1 + int(conf["spark.dynamicAllocation.maxExecutors"])
    assert _application(synthesized)["MaximumCapacity"] == {"Cpu": "16 vCPU", "Memory": "64 GB", "Disk": "200 GB"}
    assert workers * int(conf["spark.executor.cores"]) == 16
    assert all(conf[f"spark.{role}.memory"] == "14g" for role in ("driver", "executor"))  # + 10 % overhead < 16 GB


def test_warm_pool_is_off_by_default_and_pre_initializes_job_sized_workers_when_asked(
    synthesized: Synthesized, warm_stack: Synthesized
) -> None:
    # GIVEN the default stack THEN no pre-initialized capacity (nothing billed while idle)
    assert "InitialCapacity" not in _application(synthesized)
    # GIVEN -c warmPool=1x2 THEN one driver and two executors of the job's worker size are pre-initialized
    capacity = {item["Key"]: item["Value"] for item in _application(warm_stack)["InitialCapacity"]}
    worker = {"Cpu": "4 vCPU", "Memory": "16 GB", "Disk": "20 GB"}
    assert capacity == {"Driver": {"WorkerCount": 1, "WorkerConfiguration": worker},
                        "Executor": {"WorkerCount": 2, "WorkerConfiguration": worker}}
    # AND the application still auto-stops (which releases the pool) after its idle timeout
    assert _application(warm_stack)["AutoStopConfiguration"] == {"Enabled": True, "IdleTimeoutMinutes": 15}
    # AND a run starts on the pre-initialized executors, and may still grow to the maximum
    env = _functions(warm_stack)["job_state"]["Properties"]["Environment"]["Variables"]
    conf = _conf(env["SPARK_SUBMIT_PARAMETERS"])
    assert conf["spark.dynamicAllocation.initialExecutors"] == "2"
    assert conf["spark.dynamicAllocation.maxExecutors"] == "3"


def test_dashboard_graphs_the_sealed_backlog_and_images_per_job_run(synthesized: Synthesized) -> None:
    # GIVEN the synthesized dashboard
    widgets = {w["properties"]["title"]: w["properties"] for w in _dashboard(synthesized)["widgets"]}
    # WHEN the two issue-19 widgets are read
    (backlog,) = [props for title, props in widgets.items() if "SealedBacklogImages" in title]
    (per_run,) = [props for title, props in widgets.items() if "ImagesPerJobRun" in title]
    # THEN they graph the Lambdas' metrics in their namespace and service dimension
    dims = ["service", "fruits-ingestion"]
    assert [m[:4] for m in backlog["metrics"][:2]] == [["Fruits", "SealedBacklogImages", *dims]] * 2
    assert [m[4]["stat"] for m in backlog["metrics"][:2]] == ["Maximum", "Minimum"]
    assert backlog["metrics"][2][0]["expression"] == "DIFF(floor)"  # the alarm's expression, right axis
    assert [m[:4] for m in per_run["metrics"]] == [["Fruits", "ImagesPerJobRun", *dims]] * 3
    assert [m[4].get("stat", "Average") for m in per_run["metrics"]] == ["Average", "Maximum", "SampleCount"]
    # AND the images-per-run graph marks the cap
    assert per_run["annotations"]["horizontal"] == [{"value": 20000, "label": "JOB_MAX_IMAGES", "yAxis": "left"}]


def test_alarm_when_the_sealed_backlog_floor_keeps_growing(synthesized: Synthesized) -> None:
    # GIVEN the synthesized alarms
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm")
    (alarm,) = [a["Properties"] for logical_id, a in alarms.items() if "SealedBacklogGrowing" in logical_id]
    # THEN it watches DIFF of the backlog's 15-minute Minimum (its floor, which drops to what a run leaves behind)
    expression, floor = alarm["Metrics"]
    assert expression == {**expression, "Expression": "DIFF(floor)", "ReturnData": True}
    assert floor["Id"] == "floor" and floor["ReturnData"] is False
    assert floor["MetricStat"] == {
        "Metric": {"Namespace": "Fruits", "MetricName": "SealedBacklogImages",
                   "Dimensions": [{"Name": "service", "Value": "fruits-ingestion"}]},
        "Period": 900,
        "Stat": "Minimum",
    }
    # AND alarms when the floor rose in 4 of the last 5 periods; no data is no evidence of growth
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 4)
    assert alarm["TreatMissingData"] == "notBreaching"
    # AND it notifies the alarm topic like every other alarm
    (topic_id,) = synthesized.of_type("AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]
