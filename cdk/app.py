"""CDK entry point (``cdk.json``: ``python -m cdk.app``): read the context once, build the one stack,
check it with cdk-nag, synthesize. A refused setting (e.g. a region other than eu-west-3) exits 2 with a
one-line message."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App
from cdk_nag import AwsSolutionsChecks

from cdk.assets import REPO_ROOT, stage_lambda_code, stage_spark_code
from cdk.config import ConfigError, DeployConfig, load_config
from cdk.nag import add_nag_checks
from cdk.stack import FruitsStack

CONTEXT_KEYS = (
    "region",
    "stackName",
    "powertoolsLayerVersion",
    "emrArchitecture",
    "emrMaxCpu",
    "emrMaxMemory",
    "emrMaxDisk",
    "emrIdleStopMinutes",
    "tickRateMinutes",
    "reconcileRateHours",
    "batchThreshold",
    "batchMaxImages",
    "batchMaxWaitSeconds",
    "maxAttempts",
    "pcaK",
    "jobPrecision",
    "jobCalibration",
    "jobTimeoutMinutes",
    "jobMaxImages",
    "warmPool",
    "logRetentionDays",
    "ingestMaxConcurrency",
    "reservedConcurrency",
    "alarmEmail",
)


CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` block of ``cdk.json`` (defaults + feature flags), as the CDK CLI would pass it.

    Use it to build the app outside the CLI (tests): ``App(context={**cdk_json_context(), ...})``.
    """
    return dict(json.loads(path.read_text(encoding="utf-8")).get("context", {}))


@dataclass(frozen=True)
class BuiltApp:
    """The app with its one stack, the settings it was built from, and the cdk-nag pack checking it."""

    app: App
    stack: FruitsStack
    config: DeployConfig
    nag: AwsSolutionsChecks


def build_app(app: App | None = None, *, repo_root: Path = REPO_ROOT) -> BuiltApp:
    """Create (or fill) ``app`` with the Fruits stack and the cdk-nag checks; does not synthesize.

    Raises:
        ConfigError: a context value is refused (see :func:`cdk.config.load_config`).
        FileNotFoundError: the Lambda handlers or the Spark entry point are missing under ``repo_root``.
    """
    app = app or App()
    context = {key: app.node.try_get_context(key) for key in CONTEXT_KEYS}
    config = load_config({key: value for key, value in context.items() if value is not None})
    stack = FruitsStack(
        app,
        config.stack_name,
        config=config,
        lambda_code_dir=stage_lambda_code(repo_root),
        spark_code_dir=stage_spark_code(repo_root),
    )
    return BuiltApp(app=app, stack=stack, config=config, nag=add_nag_checks(app))


def main() -> int:
    """Synthesize the cloud assembly; 0 on success, 1 on unacknowledged cdk-nag findings, 2 on a refused setting."""
    try:
        built = build_app()
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        built.app.synth()
    except RuntimeError as error:  # cdk-nag findings: the report was printed above
        print(f"error: synth refused: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
