"""Reverse proxies in front of the API: whose forwarded headers count, and who the client is.

``settings.trusted_proxies`` lists the proxies' networks. A request whose socket peer is one of
them gets werkzeug's ``ProxyFix``: its client address and scheme are taken from the last hop of
``X-Forwarded-For`` and ``X-Forwarded-Proto`` (the one the proxy added). From any other peer
those headers are left as sent and believed by nothing.

The open mode (no key, tenant ``local``) is decided from the socket peer, never from what a
proxy says: a request that came through a proxy, or that carries forwarding headers at all, is
never taken for a loopback client (``shared.tenancy.api_keys.AuthPolicy.open_for``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Request
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.network.addresses import IPNetwork, parse_address

# Where the socket peer is kept, whatever ProxyFix makes of REMOTE_ADDR.
PEER_KEY = "colorize.socket_peer"
VIA_PROXY_KEY = "colorize.via_proxy"
# Headers by which a proxy says whom it forwards for.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_HOST")


class TrustedProxies:
    """WSGI middleware: ``ProxyFix`` for requests from the trusted proxies only."""

    def __init__(self, app: Callable[..., Iterable[bytes]], networks: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.networks = networks
        self._fixed = ProxyFix(app, x_for=1, x_proto=1)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR")
        environ[PEER_KEY] = peer
        trusted = self._trusted(peer)
        environ[VIA_PROXY_KEY] = trusted or any(environ.get(header) for header in FORWARDING_HEADERS)
        return (self._fixed if trusted else self.app)(environ, start_response)

    def _trusted(self, peer: str | None) -> bool:
        if not peer or not self.networks:
            return False
        address = parse_address(peer)
        return address is not None and any(address in network for network in self.networks)


def socket_peer(request: Request) -> str | None:
    """The address the connection came from (a proxy's, when one forwarded the request)."""
    return request.environ.get(PEER_KEY, request.remote_addr)


def via_proxy(request: Request) -> bool:
    """Whether a proxy forwarded the request (a trusted one, or any that left forwarding headers)."""
    return bool(request.environ.get(VIA_PROXY_KEY))
