"""Who is calling: the identity every transport establishes and the service layer checks."""

from __future__ import annotations

from dataclasses import dataclass

from taskservice.api import task_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity behind a request."""

    user_id: str
    is_admin: bool = False

    def can_see(self, task: pb.Task) -> bool:
        return self.is_admin or task.created_by == self.user_id or task.assigned_to == self.user_id


ANONYMOUS_ADMIN = Caller("anonymous", is_admin=True)
