"""Which tenant a request acts for: API-key authentication, or the open single-user mode.

``settings.auth`` picks the mode:

- ``keys``: every request but the public ones needs a key, sent as ``Authorization: Bearer
  <key>`` or ``X-API-Key: <key>``, and acts for the key's tenant. A missing, unknown or
  revoked key gets 401 with ``WWW-Authenticate``.
- ``open``: no key; every request acts as tenant ``local``. Only clients on the loopback
  interface are served so, unless ``auth_allow_open_public`` is set; others need a key, so a
  server bound wider than its ``api_host`` says is still not open to the network.
- unset: ``open`` when ``api_host`` is a loopback address, else ``keys``.

The API refuses to start ``open`` on a non-loopback ``api_host`` unless
``auth_allow_open_public`` is set. Each admitted request then counts against its tenant's
request rate (``shared/quotas.py``).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import redis
from flask import Flask, g, request

from api.services import services
from shared.api_keys import KeyStore
from shared.errors import ServiceUnavailable, Unauthorized
from shared.settings import Settings

log = logging.getLogger(__name__)

LOCAL_TENANT = "local"
AUTH_KEYS, AUTH_OPEN = "keys", "open"
# Served to anyone: probes, metrics, the API description and the web page.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v1/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)


@dataclass(frozen=True)
class AuthPolicy:
    mode: str  # AUTH_KEYS | AUTH_OPEN
    open_to_any_peer: bool  # open mode serves clients beyond the loopback interface without a key
    summary: str  # one line saying who gets in, for the start-up log

    def open_for(self, peer: str | None) -> bool:
        """Whether a request from ``peer`` acts as tenant ``local`` without a key."""
        return self.mode == AUTH_OPEN and (self.open_to_any_peer or (peer is not None and is_loopback(peer)))


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; any other name counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def auth_policy(settings: Settings) -> AuthPolicy:
    """The policy ``settings`` ask for; ValueError for open mode on a public interface without the override."""
    host = settings.api_host
    loopback = is_loopback(host)
    mode = settings.auth or (AUTH_OPEN if loopback else AUTH_KEYS)
    if mode == AUTH_KEYS:
        why = "COLORIZE_AUTH=keys" if settings.auth else f"COLORIZE_AUTH is unset and {host} is not a loopback address"
        return AuthPolicy(AUTH_KEYS, False, f"authentication: API keys required ({why})")
    if not loopback and not settings.auth_allow_open_public:
        raise ValueError(
            f"refusing to serve without authentication (COLORIZE_AUTH=open) on {host}, which is not a "
            "loopback address: use COLORIZE_AUTH=keys, bind COLORIZE_API_HOST=127.0.0.1, or set "
            "COLORIZE_AUTH_ALLOW_OPEN_PUBLIC=true to accept anyone who can reach it"
        )
    if settings.auth_allow_open_public:
        return AuthPolicy(AUTH_OPEN, True, f"authentication OFF on {host} for every client: "
                          f"anyone who reaches it acts as tenant '{LOCAL_TENANT}' (COLORIZE_AUTH_ALLOW_OPEN_PUBLIC)")
    why = "COLORIZE_AUTH=open" if settings.auth else f"COLORIZE_AUTH is unset and {host} is a loopback address"
    return AuthPolicy(AUTH_OPEN, False, f"authentication OFF ({why}): loopback clients act as tenant "
                      f"'{LOCAL_TENANT}' without a key, others need one; COLORIZE_AUTH=keys requires keys")


def install_authentication(app: Flask, settings: Settings) -> AuthPolicy:
    """Authenticate every non-public request of ``app`` and count it against its tenant's rate."""
    policy = auth_policy(settings)
    if policy.mode == AUTH_OPEN:
        log.warning("%s", policy.summary)
    else:
        log.info("%s", policy.summary)

    @app.before_request
    def _admit_request() -> None:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return
        svc = services()
        try:
            g.tenant = _tenant_of_request(policy, svc.keys)
            svc.quotas.take_request(g.tenant)
        except redis.RedisError as exc:
            raise ServiceUnavailable("the key and quota store is unavailable") from exc

    return policy


def current_tenant() -> str:
    """The tenant the current request acts for."""
    tenant = g.get("tenant")
    if tenant is None:
        raise RuntimeError("current_tenant() called outside an authenticated request")
    return tenant


def _tenant_of_request(policy: AuthPolicy, keys: KeyStore) -> str:
    if policy.open_for(request.remote_addr):
        return LOCAL_TENANT
    token = _presented_key()
    if token is None:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' "
                           "(an operator creates keys with 'colorize keys create')")
    key = keys.authenticate(token)
    if key is None:
        raise Unauthorized("the API key is not valid")
    if key.revoked:
        raise Unauthorized("the API key has been revoked", key_id=key.id)
    g.api_key_id = key.id
    return key.tenant


def _presented_key() -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None
