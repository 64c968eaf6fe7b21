"""Context → settings: the Paris region is enforced, values are validated, the CLI gets a one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cdk.config import DEFAULT_POWERTOOLS_LAYER_VERSION, ConfigError, load_config
from lambdas import resources

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_default_region_is_paris_and_account_comes_from_the_cdk_env() -> None:
    # GIVEN no region in the context and the account the CDK CLI exports
    # WHEN the settings are loaded
    config = load_config({}, env={"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "us-east-1"})
    # THEN the region is eu-west-3 whatever the profile's default region, and the account is the CLI's
    assert config.region == resources.REGION == "eu-west-3"
    assert config.account == "123456789012"


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "eu-central-1"])
def test_any_other_region_is_refused(region: str) -> None:
    # GIVEN a context asking for another region / WHEN loaded / THEN refused, naming the region and the reason
    with pytest.raises(ConfigError, match=rf"region '{region}' refused.*eu-west-3"):
        load_config({"region": region}, env={})


def test_bad_values_are_refused_with_the_context_key() -> None:
    with pytest.raises(ConfigError, match="emrArchitecture"):
        load_config({"emrArchitecture": "RISCV"}, env={})
    with pytest.raises(ConfigError, match="tickRateMinutes"):
        load_config({"tickRateMinutes": "six"}, env={})
    with pytest.raises(ConfigError, match="batchThreshold"):
        load_config({"batchThreshold": 0}, env={})
    with pytest.raises(ConfigError, match="jobPrecision"):
        load_config({"jobPrecision": "float16"}, env={})
    assert load_config({"jobPrecision": "bfloat16"}, env={}).job_precision == "bfloat16"


def test_job_engine_defaults_to_what_installs_on_the_architecture() -> None:
    # GIVEN no jobEngine THEN each architecture gets its default engine (spark_jobs.featurize.engines.DEFAULT_ENGINE)
    assert load_config({}, env={}).job_engine == "onnxruntime"  # ARM64 is the default architecture
    assert load_config({"emrArchitecture": "X86_64"}, env={}).job_engine == "openvino"
    assert load_config({"jobEngine": "tensorflow"}, env={}).job_engine == "tensorflow"
    assert load_config({"jobPrecision": "bfloat16"}, env={}).job_engine == "tensorflow"
    # AND an engine whose wheel does not install in the ARM64 image (OpenVINO: glibc 2.35) is refused
    with pytest.raises(ConfigError, match="jobEngine"):
        load_config({"jobEngine": "openvino"}, env={})
    with pytest.raises(ConfigError, match="jobEngine"):
        load_config({"jobEngine": "tensorrt", "emrArchitecture": "X86_64"}, env={})
    with pytest.raises(ConfigError, match="float32 only"):
        load_config({"jobEngine": "onnxruntime", "jobPrecision": "bfloat16"}, env={})
    # AND int8 keeps each architecture's default engine, and is refused on Keras TF
    assert load_config({"jobPrecision": "int8"}, env={}).job_engine == "onnxruntime"
    assert load_config({"jobPrecision": "int8", "emrArchitecture": "X86_64"}, env={}).job_engine == "openvino"
    with pytest.raises(ConfigError, match="int8"):
        load_config({"jobEngine": "tensorflow", "jobPrecision": "int8"}, env={})


def test_powertools_layer_arn_is_the_official_arm64_python312_layer_with_a_context_version() -> None:
    default = load_config({}, env={})
    pinned = load_config({"powertoolsLayerVersion": "31"}, env={})
    prefix = "arn:aws:lambda:eu-west-3:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:"
    assert default.powertools_layer_arn == f"{prefix}{DEFAULT_POWERTOOLS_LAYER_VERSION}"
    assert pinned.powertools_layer_arn == f"{prefix}31"


def test_cdk_app_exits_2_with_one_line_for_another_region() -> None:
    # GIVEN the context the CDK CLI would pass for `cdk synth -c region=us-east-1`
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env["CDK_CONTEXT_JSON"] = json.dumps({"region": "us-east-1"})
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    # WHEN the app runs
    result = subprocess.run(
        [sys.executable, "-m", "cdk.app"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    # THEN exit 2 and a one-line message, no traceback
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: region 'us-east-1' refused: Fruits! deploys only to eu-west-3 (Paris, GDPR data residency)"
    ]


def test_concurrency_caps_default_from_cdk_json_and_are_validated() -> None:
    # GIVEN no concurrency context / WHEN loaded / THEN the documented defaults (ingest reservation = SQS cap)
    config = load_config({}, env={})
    assert config.ingest_max_concurrency == 5
    assert config.reserved_concurrency == {"ingest": 5, "job_state": 2, "flush": 1, "tick": 1, "reconcile": 1}
    # a `-c` JSON text merges over the defaults; null reserves nothing for that function
    config = load_config({"ingestMaxConcurrency": "8", "reservedConcurrency": '{"tick": null}'}, env={})
    assert config.reserved_concurrency["ingest"] == 8 and config.reserved_concurrency["tick"] is None
    # refused: an SQS cap out of 2..1000, a reservation below the cap, an unknown function, a non-object
    for context, key in (
        ({"ingestMaxConcurrency": 1}, "ingestMaxConcurrency"),
        ({"ingestMaxConcurrency": 1001}, "ingestMaxConcurrency"),
        ({"ingestMaxConcurrency": 10, "reservedConcurrency": {"ingest": 4}}, "reservedConcurrency"),
        ({"reservedConcurrency": {"ingestt": 4}}, "reservedConcurrency"),
        ({"reservedConcurrency": "[1]"}, "reservedConcurrency"),
        ({"reservedConcurrency": {"flush": 0}}, "reservedConcurrency.flush"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(context, env={})
