"""Fruits! CDK app (not installed): run from the repo root as ``python -m cdk.app`` (see cdk.json)."""
