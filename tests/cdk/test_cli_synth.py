"""The real `cdk synth` (aws-cdk CLI from npm, pinned in package.json) works offline, without Docker and
without AWS credentials. Skipped when `npm ci` has not installed the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK_CLI.exists(), reason="aws-cdk CLI not installed (run `npm ci` at the repo root)")
def test_cdk_cli_synth_succeeds_offline_without_credentials(tmp_path: Path) -> None:
    # GIVEN an environment with no AWS_* / CDK_* variables, an empty HOME (no ~/.aws) and no Docker needed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # `python` = this venv
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CDK_DISABLE_VERSION_CHECK="1",
    )
    outdir = tmp_path / "cdk.out"
    # WHEN the CLI synthesizes the app of cdk.json
    result = subprocess.run(
        [str(CDK_CLI), "synth", "--no-notices", "--no-version-reporting", "--quiet", "--output", str(outdir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # THEN it succeeds and writes the Paris stack's template and the image asset (built only at publish time)
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((outdir / "manifest.json").read_text())
    stack = manifest["artifacts"]["Fruits"]
    assert stack["environment"].endswith("/eu-west-3")
    assets = json.loads((outdir / "Fruits.assets.json").read_text())
    assert len(assets["dockerImages"]) == 1
    template = json.loads((outdir / "Fruits.template.json").read_text())
    assert any(r["Type"] == "AWS::EMRServerless::Application" for r in template["Resources"].values())
