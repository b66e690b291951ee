"""The ride API on moto tables built from template.yaml."""

import boto3
import pytest

from local.template import Stack
from tests.support.api import NEW_RIDE, ApiClient


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    return ApiClient(stack, monkeypatch)


def test_create_then_get(client: ApiClient) -> None:
    created = client.request("POST", "/rides", NEW_RIDE, key="k-1")
    assert created.status == 201, created.body
    ride = created.json
    got = client.request("GET", f"/rides/{ride['rideId']}")
    assert got.status == 200, got.body
    assert got.headers["etag"] == '"1"'
    print(created.headers, created.body, got.body)
