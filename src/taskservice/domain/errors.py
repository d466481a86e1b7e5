"""Domain errors raised by the service layer and the stores.

Each error carries its canonical google.rpc.Code number; transports map it to their wire status in
exactly one place (`taskservice.transport.status`). Messages are written for people: they are sent
to clients as they are, so they never contain exception text from a library.
"""

from __future__ import annotations

from dataclasses import dataclass


class Code:
    """google.rpc.Code numbers (identical to grpc.StatusCode values)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class DomainError(Exception):
    """Base of every error a client may see; `message` is safe to send."""

    code: int = Code.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    code = Code.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation] | FieldViolation) -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(field, description))


class NotFound(DomainError):
    code = Code.NOT_FOUND

    @classmethod
    def task(cls, task_id: str) -> NotFound:
        return cls(f"task {task_id!r} not found")

    @classmethod
    def project(cls, project_id: str) -> NotFound:
        return cls(f"project {project_id!r} not found")


class AlreadyExists(DomainError):
    code = Code.ALREADY_EXISTS


class VersionConflict(DomainError):
    """Optimistic-locking failure: the task is not at the version the caller expected."""

    code = Code.ABORTED

    def __init__(self, task_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"task {task_id!r} is at version {actual}, not the expected version {expected}; "
            "re-read it and retry"
        )
        self.expected = expected
        self.actual = actual


class Aborted(DomainError):
    """A concurrent change got in the way of this one; re-read and retry."""

    code = Code.ABORTED


class PermissionDenied(DomainError):
    code = Code.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = Code.UNAUTHENTICATED

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason  # one word from a fixed set, for the auth-failures metric


class ResourceExhausted(DomainError):
    code = Code.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FailedPrecondition(DomainError):
    """The request is valid but the state forbids it (the last owner leaving, a project holding tasks)."""

    code = Code.FAILED_PRECONDITION


class DeadlineExceeded(DomainError):
    code = Code.DEADLINE_EXCEEDED


class Unimplemented(DomainError):
    """A method, or a feature of a protocol, this server does not offer."""

    code = Code.UNIMPLEMENTED


class OutOfRange(DomainError):
    code = Code.OUT_OF_RANGE


class Unavailable(DomainError):
    code = Code.UNAVAILABLE


class Internal(DomainError):
    code = Code.INTERNAL


class BulkInterrupted(DomainError):
    """A bulk stream that failed part-way, after some of its chunks were committed. Every item
    before `handled` was either stored (`stored` tasks, first to last id in stream order) or
    rejected (`rejected`); nothing from `handled` on was stored. The client sees `cause`'s code and
    details, plus these figures (transport/status.py), and may resend from `handled`."""

    def __init__(
        self, cause: DomainError, *, handled: int, stored: int, rejected: int, first_id: str, last_id: str
    ) -> None:
        super().__init__(
            f"{cause.message} (the items before index {handled} were handled: {stored} stored, "
            f"{rejected} rejected; nothing from index {handled} on was stored)"
        )
        self.code = cause.code
        self.cause = cause
        self.handled = handled
        self.stored = stored
        self.rejected = rejected
        self.first_id = first_id
        self.last_id = last_id
