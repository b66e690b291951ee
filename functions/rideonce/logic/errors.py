"""Domain errors. Handlers map each one to an HTTP status in one place; the domain knows nothing of HTTP."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose; the message tells the caller what to fix."""


class RideNotFoundError(DomainError):
    pass


class InvalidTransitionError(DomainError):
    pass


class VersionMismatchError(DomainError):
    """The ride changed since the version the caller named in `If-Match`, or under a concurrent write."""


class ConcurrentChangeError(DomainError):
    """Another change to the same ride committed first; the caller should read it again and retry."""


class MalformedPreconditionError(DomainError):
    pass


class IdempotencyKeyReusedError(DomainError):
    """The key was already used for a different request (another body, method or path)."""


class RequestInFlightError(DomainError):
    """Another request with the same key is still being processed."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
