"""Who is calling: the identity every transport establishes and the service layer checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity behind a request."""

    user_id: str
    is_admin: bool = False


ANONYMOUS_ADMIN = Caller("anonymous", is_admin=True)
