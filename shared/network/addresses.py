"""Addresses: what one really is, which the service may reach for a tenant, and connections
pinned to the address checked.

Tenants name hosts the service then calls: webhook callback URLs, stored connections' S3
endpoints and URL sources. Each host is resolved and every address it resolves to checked
(:func:`permitted_addresses`); the connection then goes to the very address checked
(:func:`pinned_pool`), so a DNS answer that changes in between cannot point it inside the
network. Loopback, private, link-local, multicast, reserved and other non-global addresses are
refused, also when wrapped in an IPv6 form (IPv4-mapped, 6to4, Teredo, NAT64), unless settings
allow them.

The API's checks of its own peers (trusted proxies, loopback clients) read them with
:func:`parse_address`, so ``::ffff:127.0.0.1`` is the IPv4 address it stands for there too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from shared.errors import InvalidRequest
from shared.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[IPAddress]]

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64).
_NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class ForbiddenAddress(InvalidRequest):
    """A URL a tenant gave leads to an address the service may not call."""


class Endpoint(Protocol):
    """Where a connection goes, as a URL names it (``shared.webhooks.callback_urls.CallbackTarget``)."""

    @property
    def scheme(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


# --- what an address is ---------------------------------------------------------------------


def unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) stands for; any other unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> IPAddress | None:
    """The address ``text`` spells (IPv6 in brackets or not), unmapped; None when it spells none."""
    try:
        return unmapped(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through: mapped, 6to4, Teredo, NAT64."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in prefix for prefix in _NAT64_PREFIXES):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public_address(address: IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified and other
    non-global addresses, also when wrapped in an IPv6 form (mapped, 6to4, Teredo, NAT64)."""
    inner = unmapped(address)
    if inner is not address:
        # Judged as the IPv4 address it is; Python files the mapped range itself as private.
        return is_public_address(inner)
    if isinstance(address, ipaddress.IPv6Address) and not all(
        is_public_address(inner) for inner in embedded_ipv4(address)
    ):
        return False
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs, as settings hold them (checked when settings are read)."""
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",") if n.strip())


# --- which addresses the service may reach --------------------------------------------------


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the service may reach for a tenant: public ones, plus what settings allow."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls(
            allow_private=settings.webhook_allow_private,
            allowed_networks=parse_networks(settings.webhook_allowed_networks),
        )

    def permits(self, address: IPAddress) -> bool:
        if self.allow_private or is_public_address(address):
            return True
        candidates = {address, unmapped(address)}
        return any(
            a in network for a in candidates for network in self.allowed_networks if a.version == network.version
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order; InvalidRequest when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(f"the host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def permitted_addresses(
    target: Endpoint, policy: AddressPolicy, resolver: Resolver = resolve, *, field: str
) -> Sequence[IPAddress]:
    """The target's addresses; InvalidRequest (naming ``field``) when its host does not resolve,
    ForbiddenAddress when any one of its addresses is not permitted."""
    try:
        addresses = resolver(target.host, target.port)
    except InvalidRequest as exc:
        raise InvalidRequest(f"the host {target.host!r} of '{field}' does not resolve", field=field) from exc
    if not addresses:
        raise InvalidRequest(f"the host {target.host!r} of '{field}' does not resolve", field=field)
    for address in addresses:
        if not policy.permits(address):
            raise ForbiddenAddress(
                f"'{field}' leads to a loopback, private or otherwise non-public address",
                field=field,
                address=str(address),
            )
    return list(addresses)


def pinned_pool(target: Endpoint, address: IPAddress, timeout_s: float) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked ``address`` (no second DNS answer is asked for);
    over https, TLS still names and verifies the target's host."""
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s, total=timeout_s)
    options: dict[str, Any] = {"timeout": timeout, "retries": False, "maxsize": 1}
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(address),
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            **options,
        )
    return urllib3.HTTPConnectionPool(str(address), target.port, **options)
