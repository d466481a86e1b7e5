"""The SSRF guard: a webhook may only reach public addresses unless the operator allows private ones.

A URL is checked when a webhook is created or changed, and its host is resolved and checked again
before every delivery, which then connects to the address that was checked (a name that resolves to
a public address at creation and to 127.0.0.1 later never reaches loopback). Anything that is not a
global unicast address is refused: loopback, link-local (cloud metadata at 169.254.169.254),
private, shared (100.64/10), multicast, reserved and unspecified, in IPv4, IPv6 and IPv4-mapped form.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAX_URL = 2048


class Refused(Exception):
    """A webhook URL the guard will not call; the message says why, for the webhook's owner."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery goes: the URL, and the checked address to connect to (None: any, when
    private addresses are allowed and the name is left to the HTTP client)."""

    url: str
    host: str
    address: IPAddress | None


def check_syntax(url: str) -> None:
    """Refuse what is not an absolute http(s) URL with a host and without credentials."""
    if len(url) > _MAX_URL:
        raise Refused(f"must be at most {_MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise Refused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not carry credentials; authenticate the request with its signature")
    if port == 0:
        raise Refused("must not use port 0")


def _forbidden(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


class UrlGuard:
    """Checks webhook URLs; `allow_private` (`--webhook-allow-private`) turns the address check off."""

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def check(self, url: str) -> Target:
        """The URL's target, or Refused with the reason."""
        check_syntax(url)
        host = urlsplit(url).hostname or ""
        if self.allow_private:
            return Target(url, host, None)
        addresses = await _resolve(host)
        bad = [a for a in addresses if _forbidden(a)]
        if bad:
            raise Refused(
                f"resolves to {bad[0]}, a loopback, link-local or private address; webhooks reach public "
                "addresses only (the server's --webhook-allow-private lifts this)"
            )
        return Target(url, host, addresses[0])


async def _resolve(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"host {host!r} does not resolve ({error})") from None
    found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not found:
        raise Refused(f"host {host!r} does not resolve")
    return found
