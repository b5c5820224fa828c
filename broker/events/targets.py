"""Where a webhook may be delivered: an http or https URL none of whose addresses lies in a
denied network (BROKER_WEBHOOK_DENY; by default link-local, which holds the cloud metadata
services).

A callback URL is checked twice: its form when the job is created (a literal address in a
denied network is refused then), and every address its host resolves to when it is
delivered. The delivery then connects to the address it checked, so a name that resolves
elsewhere the second time (DNS rebinding) cannot lead it past the check.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

MAX_URL = 2048

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(ValueError):
    """The URL is not one a webhook may be delivered to; the message says why."""


def networks(denied: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(n, strict=False) for n in denied]


def parse(url: str) -> SplitResult:
    """The URL split, when it is an http or https URL with a host; else Refused."""
    if len(url) > MAX_URL:
        raise Refused(f"may be at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError as exc:
        raise Refused(f"is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise Refused("must name a host")
    if parts.username or parts.password:
        raise Refused("must not carry a user or password")
    return parts


def _denied(address: str, denied: list[Network]) -> Network | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return next((n for n in denied if ip.version == n.version and ip in n), None)


def check(url: str, denied: list[Network]) -> None:
    """Refused unless `url` is a well-formed http(s) URL whose host, if a literal address, is
    not denied (a name is checked when it is resolved, at delivery)."""
    host = parse(url).hostname or ""
    try:
        network = _denied(host, denied)
    except ValueError:
        return  # a name, not an address
    if network is not None:
        raise Refused(f"leads to {host}, in the denied network {network} "
                      "(BROKER_WEBHOOK_DENY)")


def resolve(host: str, port: int, denied: list[Network]) -> tuple[socket.AddressFamily, str]:
    """The first address `host` resolves to; Refused when any of them is denied."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
    for _family, _, _, _, sockaddr in found:
        network = _denied(str(sockaddr[0]), denied)
        if network is not None:
            raise Refused(f"{host} resolves to {sockaddr[0]}, in the denied network {network}")
    family, _, _, _, sockaddr = found[0]
    return family, str(sockaddr[0])
