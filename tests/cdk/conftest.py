"""One synthesis of the Fruits stack per test session (synth takes seconds): template + cdk-nag report."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Node 20 is past end-of-life for jsii: keep its banner out of test output (the CI machine has Node 20).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ALARM_EMAIL = "alerts@example.com"


@dataclass(frozen=True)
class Synthesized:
    """The built app, its CloudFormation template (dict + assertions view) and the cloud assembly folder."""

    built: Any  # cdk.app.BuiltApp
    template: Any  # aws_cdk.assertions.Template
    resources: dict[str, dict[str, Any]]
    outdir: Path

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id → resource, for every resource of ``resource_type``."""
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """Build the app as `cdk synth` would (cdk.json context + an alarm e-mail, so the SNS branch is checked)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from cdk.app import build_app, cdk_json_context

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir), context={**cdk_json_context(), "alarmEmail": ALARM_EMAIL})
    built = build_app(app)
    template = Template.from_stack(built.stack)  # synthesizes: fails on any unacknowledged cdk-nag finding
    yield Synthesized(built=built, template=template, resources=template.to_json()["Resources"], outdir=outdir)
