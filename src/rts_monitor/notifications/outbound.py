"""Where the server may send requests on a rule author's behalf (webhooks, and any gateway URL).

A rule author chooses the webhook URL, and customers may write rules (RTS_ALERT_CUSTOMER_RULES),
so an unchecked URL lets anyone make the server call its own loopback services, the private
network or a cloud metadata endpoint (server-side request forgery). The guard:

* in production, only ``https`` URLs (``check_url``, when a rule is saved and before sending);
* the host's addresses are resolved at delivery time and every one must be a public unicast
  address (not loopback, private, link-local — which includes the 169.254.169.254 metadata
  address —, unique-local, multicast, CGNAT, reserved; IPv4-mapped IPv6 is judged by its IPv4);
  the connection then goes to exactly the addresses that were checked (``GuardedResolver`` is
  aiohttp's resolver for the session), so a DNS answer cannot change between check and connect;
* ``RTS_OUTBOUND_ALLOW`` lists CIDRs or host names that may be reached anyway (an on-premises
  receiver); development and test mode allow private addresses (local receivers) but never a
  metadata address unless allow-listed;
* callers do not follow redirects and cap what they read of an answer.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from rts_monitor.core.errors import ValidationFailed
from rts_monitor.core.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Cloud instance metadata (AWS/GCP/Azure/OpenStack IPv4, AWS IPv6): refused even in development.
METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))
MAX_RESPONSE_BYTES = 64 * 1024


class DestinationRefused(OSError):
    """The destination is not one the server may call; the message says why."""


def _allow_list(settings: Settings) -> tuple[list[IpNetwork], set[str]]:
    networks: list[IpNetwork] = []
    hosts: set[str] = set()
    for item in (x.strip() for x in settings.outbound_allow.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower().rstrip("."))
    return networks, hosts


def refusal(settings: Settings, address: IpAddress, host: str = "") -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    networks, hosts = _allow_list(settings)
    if host.lower().rstrip(".") in hosts or any(address in n for n in networks if n.version == address.version):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in n for n in METADATA if n.version == address.version):
        return f"{address} is a cloud metadata address"
    if address.is_multicast or address.is_unspecified:
        return f"{address} is not a unicast address"
    if address.is_global:
        return None
    local = address.is_loopback or address.is_private or address.is_link_local
    if local and not settings.production:
        return None  # development/test: local receivers are fine
    kind = ("loopback" if address.is_loopback else "link-local" if address.is_link_local
            else "private" if address.is_private else "shared or reserved")
    return f"{address} is a {kind} address (RTS_OUTBOUND_ALLOW lists exceptions)"


def check_url(settings: Settings, url: str, *, field: str) -> None:
    """When a URL is saved: scheme and, for a literal address, the address (names resolve later)."""
    parts = urlsplit(url)
    allowed = ("https",) if settings.production else ("https", "http")
    if parts.scheme not in allowed or not parts.hostname:
        raise ValidationFailed(f"{field}: must be an {' or '.join(allowed)} URL with a host", field=field)
    if parts.username or parts.password:
        raise ValidationFailed(f"{field}: credentials in the URL are not allowed", field=field)
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    why = refusal(settings, address, parts.hostname)
    if why:
        raise ValidationFailed(f"{field}: {why}", field=field)


def check_before_send(settings: Settings, url: str) -> None:
    """At delivery: the same rules as ``check_url`` (a rule saved before a policy change, a literal
    address aiohttp would not resolve); raises ``DestinationRefused``."""
    try:
        check_url(settings, url, field="url")
    except ValidationFailed as exc:
        raise DestinationRefused(exc.message.removeprefix("url: ")) from None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the address check: what is checked is what is connected to."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            why = refusal(self._settings, ipaddress.ip_address(r["host"]), host)
            if why:
                raise DestinationRefused(f"{host} resolves to {why}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def connector_kwargs(settings: Settings) -> dict[str, Any]:
    """For ``aiohttp.TCPConnector(**…)`` of every session that calls rule-chosen URLs."""
    return {"resolver": GuardedResolver(settings), "use_dns_cache": False}
