"""Who is calling: turns request metadata into a Caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from taskservice.model import ANONYMOUS_ADMIN, Caller


class Authenticator(Protocol):
    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        """Return the caller, or raise Unauthenticated."""


class NoAuth:
    """`--auth none`: every caller is the admin user `anonymous` (local development only)."""

    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        return ANONYMOUS_ADMIN
