"""cdk-nag (AwsSolutions) has no unacknowledged finding, and every acknowledgement names a rule and a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Environment, Stack, Validations
from aws_cdk import aws_sqs as sqs

from cdk.nag import acknowledge, add_nag_checks

from .conftest import Synthesized


def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    # GIVEN the app with AwsSolutionsChecks registered / WHEN the pack validates the whole tree
    report = synthesized.built.nag.validate_scope(synthesized.built.app)
    # THEN no violation is left (the pack is the one registered as a validation plugin of the app)
    found = [(v.rule_name, [res.resource_logical_id for res in v.violating_resources]) for v in report.violations]
    assert found == []
    assert report.success


def test_synth_ran_the_nag_plugin_and_it_passed(synthesized: Synthesized) -> None:
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []  # written by every synth; a failing plugin would be listed here


def test_add_nag_checks_makes_synth_fail_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    # GIVEN an app wired like ours, with a queue that allows plain HTTP (AwsSolutions-SQS4) and no DLQ
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Probe", env=Environment(region="eu-west-3"))
    queue = sqs.Queue(stack, "Queue", enforce_ssl=False)
    acknowledge(queue, "AwsSolutions-SQS3", "probe queue of this test, it needs no dead-letter queue")
    add_nag_checks(app)
    # WHEN synthesized / THEN synthesis is refused, and the report names the rule that was not acknowledged
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-SQS4" in report
    assert "AwsSolutions-SQS3" not in report


def test_every_acknowledgement_names_an_awssolutions_rule_and_a_reason(synthesized: Synthesized) -> None:
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledgements = [
        (construct.node.path, rule, reason)
        for construct in synthesized.built.app.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for rule, reason in entry.data.items()
    ]
    assert acknowledgements, "expected a few acknowledged findings (library helpers, S3 grant action groups)"
    for path, rule, reason in acknowledgements:
        assert "AwsSolutions-" in rule, (path, rule)
        assert len(reason.split()) >= 5, (path, rule, reason)
    # the blanket rules are never acknowledged stack-wide
    assert not [a for a in acknowledgements if a[0] == synthesized.built.stack.node.path]


def test_every_acknowledgement_matches_a_real_finding(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the same app built with acknowledgements switched off
    from cdk.app import build_app, cdk_json_context

    monkeypatch.setattr(Validations, "acknowledge", lambda self, *rules: None)
    bare = build_app(App(outdir=str(tmp_path), context={**cdk_json_context(), "alarmEmail": "a@example.com"}))
    findings = {
        (resource.construct_path, violation.rule_name)
        for violation in bare.nag.validate_scope(bare.app).violations
        for resource in violation.violating_resources
    }
    # WHEN each acknowledgement of the real app is looked up among those findings
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    stale = [
        (construct.node.path, rule)
        for construct in synthesized.built.app.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for rule in (r.removeprefix("Annotation::") for r in entry.data)
        if not any(found_rule == rule and path.startswith(construct.node.path) for path, found_rule in findings)
    ]
    # THEN none is stale (an acknowledgement with nothing to acknowledge would hide a future finding)
    assert findings
    assert stale == []
