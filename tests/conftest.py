"""Shared fixtures: fake AWS credentials everywhere, moto tables built from template.yaml."""

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.aws import moto_patches
from local.aws.dynamodb import create_tables
from local.aws.template import Stack


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach a real AWS account, whatever the developer's environment holds."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "rideonce")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "rideonce")


@pytest.fixture(scope="session")
def template_stack_cfn() -> dict[str, Any]:
    """The SAM translation is the slow part (about a second): do it once per session."""
    return Stack.from_file().cfn


@pytest.fixture
def stack(template_stack_cfn: dict[str, object]) -> Iterator[Stack]:
    """A fresh moto account with every table of template.yaml in it."""
    moto_patches.install()
    with mock_aws():
        stack = Stack.from_cfn(template_stack_cfn)
        create_tables(boto3.client("dynamodb", region_name=os.environ["AWS_DEFAULT_REGION"]), stack)
        yield stack
