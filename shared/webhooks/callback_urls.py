"""Callback URLs checked against server-side request forgery, and the webhook part of a job request.

The same checks guard every address the service reaches for a tenant: stored connections'
S3 endpoints and URL sources (``field`` names what the tenant sent).

A job may carry a callback URL and the events it wants. Callback hosts are resolved and every
address checked twice: when the job is created (:func:`parse_webhook`) and again at each
delivery attempt, which then connects to the very address it checked (a DNS answer that
changes in between cannot point a delivery inside the network). Loopback, private,
link-local, multicast, reserved and other non-global addresses are refused, also when
wrapped in an IPv6 form, unless settings allow them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from shared.errors import InvalidRequest
from shared.jobs.documents import EVENTS
from shared.settings import Settings

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[IPAddress]]

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64).
_NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class ForbiddenAddress(InvalidRequest):
    """A callback URL leads to an address the service may not call."""


# --- addresses ----------------------------------------------------------------------------


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
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # Judged as the IPv4 address it is; Python files the mapped range itself as private.
            return is_public_address(address.ipv4_mapped)
        if not all(is_public_address(inner) for inner in embedded_ipv4(address)):
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses deliveries may reach: public ones, plus what settings allow."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False)
            for n in settings.webhook_allowed_networks.split(",")
            if n.strip()
        )
        return cls(allow_private=settings.webhook_allow_private, allowed_networks=networks)

    def permits(self, address: IPAddress) -> bool:
        if self.allow_private or is_public_address(address):
            return True
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            a in network for a in candidates for network in self.allowed_networks if a.version == network.version
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(f"the callback host {host!r} does not resolve", field="callback_url") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL, split as a delivery needs it."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with the query string

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_callback_url(url: Any, field: str = "callback_url") -> CallbackTarget:
    """The URL's parts; InvalidRequest (naming ``field``) unless an absolute http(s) URL without credentials."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"'{field}' must be a non-empty string", field=field)
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"'{field}' is longer than {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"'{field}' is not a valid URL", field=field) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"'{field}' must be an http or https URL", field=field)
    if not parts.hostname:
        raise InvalidRequest(f"'{field}' needs a host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(f"'{field}' must not carry credentials", field=field)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    return CallbackTarget(url=url, scheme=parts.scheme, host=parts.hostname, port=port or default_port, path=path)


def permitted_addresses(
    target: CallbackTarget, policy: AddressPolicy, resolver: Resolver = resolve, field: str = "callback_url"
) -> Sequence[IPAddress]:
    """The target's addresses; ForbiddenAddress when any one of them is not permitted."""
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


def pinned_pool(target: CallbackTarget, address: IPAddress, timeout_s: float) -> urllib3.HTTPConnectionPool:
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


def parse_events(raw: Any) -> tuple[str, ...]:
    """The event filter: a list or a comma-separated string of EVENTS; all of them when absent."""
    if raw is None or raw == "":
        return EVENTS
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest("'events' must be a list of event names", field="events", allowed=list(EVENTS))
    chosen = {n.strip() for n in names if n.strip()}
    if not chosen:
        raise InvalidRequest("'events' must name at least one event", field="events", allowed=list(EVENTS))
    unknown = sorted(chosen - set(EVENTS))
    if unknown:
        raise InvalidRequest(f"unknown webhook events: {', '.join(unknown)}", field="events", allowed=list(EVENTS))
    return tuple(e for e in EVENTS if e in chosen)


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    events: tuple[str, ...]


def parse_webhook(source: Mapping[str, Any], settings: Settings, resolver: Resolver = resolve) -> WebhookRequest | None:
    """A job request's ``callback_url`` and ``events``, checked; None when it has no callback."""
    url = source.get("callback_url")
    if url is None or url == "":
        if source.get("events"):
            raise InvalidRequest("'events' needs a 'callback_url'", field="events")
        return None
    target = parse_callback_url(url)
    permitted_addresses(target, AddressPolicy.from_settings(settings), resolver)
    return WebhookRequest(url=target.url, events=parse_events(source.get("events")))
