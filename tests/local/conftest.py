"""Shared by the end-to-end tests: the local stack changes the process environment, and gives it back."""

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def restore_environment() -> Iterator[None]:
    """The local stack sets AWS_ENDPOINT_URL and the functions' variables; no other test may see them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
