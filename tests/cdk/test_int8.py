"""jobPrecision int8: the execution role may read the calibration set (and only then), the Lambdas pass it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdas import resources as r

from .conftest import Synthesized
from .test_stack import _as_list, _functions, _role_statements


@pytest.fixture(scope="module")
def int8_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack synthesized with context jobPrecision=int8 (default architecture ARM64: ONNX Runtime)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from cdk.app import build_app, cdk_json_context

    outdir: Path = tmp_path_factory.mktemp("cdk-int8.out")
    app = App(outdir=str(outdir), context={**cdk_json_context(), "jobPrecision": "int8"})
    built = build_app(app)
    template = Template.from_stack(built.stack)  # fails on any unacknowledged cdk-nag finding
    return Synthesized(built=built, template=template, resources=template.to_json()["Resources"], outdir=outdir)


def _calibration_reads(s: Synthesized) -> list[dict]:
    stack = s.built.stack
    role_id = stack.get_logical_id(stack.processing.execution_role.node.default_child)
    return [st for st in _role_statements(s, role_id)
            if any(f"/{r.CALIBRATION_PREFIX}*" in str(res) for res in _as_list(st["Resource"]))]


def test_only_an_int8_stack_lets_the_job_read_the_calibration_set(synthesized: Synthesized, int8_stack) -> None:
    # GIVEN the default (float32) stack THEN the job role cannot read calibration/
    assert not _calibration_reads(synthesized)
    # GIVEN an int8 stack THEN it may read (never write) calibration/*
    (statement,) = _calibration_reads(int8_stack)
    actions = _as_list(statement["Action"])
    assert "s3:GetObject" in actions and not any(a.startswith(("s3:Put", "s3:Delete")) for a in actions)
    # AND the Lambdas run int8 jobs on ONNX Runtime (ARM64), the calibration manifest left to the settings' default
    env = _functions(int8_stack)["job_state"]["Properties"]["Environment"]["Variables"]
    assert env["JOB_PRECISION"] == "int8" and env["JOB_ENGINE"] == "onnxruntime" and env["JOB_CALIBRATION"] == ""
