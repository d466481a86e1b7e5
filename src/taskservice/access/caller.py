"""Who is calling: the identity every transport establishes and the service layer checks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated identity behind a request. `is_service` marks a backend acting for many
    people (the token's `service` role): it may hold many more streams open, and sees no more."""

    user_id: str
    is_admin: bool = False
    is_service: bool = False
    # When the credentials stop being valid (Unix seconds, the token's exp plus the allowed clock
    # skew); None: never (--auth none). Long-lived calls (a watch) end then.
    expires_at: float | None = field(default=None, compare=False)


ANONYMOUS_ADMIN = Caller("anonymous", is_admin=True)
