"""The wall clock every service defaults to; a module of its own, so a function imports no other's use cases."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
