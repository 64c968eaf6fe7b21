"""CDK entry point (``cdk.json``: ``python -m cdk.app``): read the context once, build the one stack,
check it with cdk-nag, synthesize. A refused setting (e.g. a region other than eu-west-3) exits 2 with a
one-line message."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App

from cdk.assets import stage_lambda_code, stage_spark_code
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
    "flushRateHours",
    "reconcileRateHours",
    "batchThreshold",
    "batchMaxImages",
    "maxAttempts",
    "pcaK",
    "jobTimeoutMinutes",
    "logRetentionDays",
    "alarmEmail",
)


CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` block of ``cdk.json`` (defaults + feature flags), as the CDK CLI would pass it.

    Use it to build the app outside the CLI (tests): ``App(context={**cdk_json_context(), ...})``.
    """
    return dict(json.loads(path.read_text(encoding="utf-8")).get("context", {}))


def build_app(app: App | None = None) -> tuple[App, FruitsStack, DeployConfig]:
    """Create (or fill) ``app`` with the Fruits stack and the cdk-nag checks; does not synthesize.

    Raises:
        ConfigError: a context value is refused (see :func:`cdk.config.load_config`).
    """
    app = app or App()
    context = {key: app.node.try_get_context(key) for key in CONTEXT_KEYS}
    config = load_config({key: value for key, value in context.items() if value is not None})
    stack = FruitsStack(
        app,
        config.stack_name,
        config=config,
        lambda_code_dir=stage_lambda_code(),
        spark_code_dir=stage_spark_code(),
    )
    add_nag_checks(app)
    return app, stack, config


def main() -> int:
    """Synthesize the cloud assembly; 0 on success, 2 on a refused setting."""
    try:
        app, _, _ = build_app()
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
