"""Issue 18: the tick repairs stuck batches with GetJobRun and StartJobRun; its role allows them, on our application."""

from __future__ import annotations

import json

from tests.cdk.conftest import Synthesized
from tests.cdk.test_stack import _as_list, _functions, _role_of, _role_statements


def test_tick_may_read_our_job_runs_and_start_job_runs_on_our_application_only(synthesized: Synthesized) -> None:
    # GIVEN the synthesized stack WHEN reading the tick function's role
    stack = synthesized.built.stack
    app_arn = stack.resolve(stack.processing.application_arn)
    statements = _role_statements(synthesized, _role_of(synthesized, _functions(synthesized)["tick"]["id"]))
    # THEN GetJobRun is allowed on our application's job runs only, StartJobRun on our application only
    reads = [st for st in statements if "emr-serverless:GetJobRun" in _as_list(st["Action"])]
    assert len(reads) == 1 and reads[0]["Effect"] == "Allow"
    [resource] = _as_list(reads[0]["Resource"])
    text = json.dumps(resource)
    assert json.dumps(app_arn) in text and text.endswith('"/jobruns/*"]]}'), text
    starts = [st for st in statements if "emr-serverless:StartJobRun" in _as_list(st["Action"])]
    assert [_as_list(st["Resource"]) for st in starts] == [[app_arn]]
