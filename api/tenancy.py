"""Which tenant a request acts for: API-key authentication, or the open single-user mode.

``settings.auth`` picks the mode:

- ``keys``: every request but the public ones needs a key, sent as ``Authorization: Bearer
  <key>`` or ``X-API-Key: <key>``, and acts for the key's tenant. A missing, unknown or
  revoked key gets 401 with ``WWW-Authenticate``.
- ``open``: no key; every request acts as tenant ``local``. Only clients on the loopback
  interface are served so, unless ``auth_allow_open_public`` is set; others need a key, so a
  server bound wider than its ``api_host`` says is still not open to the network. The client
  is the socket peer, and a request a proxy forwarded is never a loopback client's
  (``api/proxies.py``): a proxy on the same host does not open the API to everyone behind it.
- unset: ``open`` when ``api_host`` is a loopback address, else ``keys``.

The API refuses to start ``open`` on a non-loopback ``api_host`` unless
``auth_allow_open_public`` is set (``auth_policy`` in ``shared/tenancy/api_keys.py``, which the local
stack also uses to say how it runs). Each admitted request then counts against its tenant's
request rate (``shared/tenancy/quotas.py``). Wrong keys are counted per client address (the one a
trusted proxy names, else the peer); past ``quotas.auth_failure_burst`` of them that address
gets 429 for any key until its bucket refills.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, g, request

from api.proxies import socket_peer, via_proxy
from api.services import Services, services
from shared.errors import ServiceUnavailable, Unauthorized
from shared.settings import Settings
from shared.tenancy.api_keys import AUTH_OPEN, LOCAL_TENANT, ApiKey, AuthPolicy, KeyStore, auth_policy

log = logging.getLogger(__name__)

# Served to anyone: probes, metrics, the API description and the web page.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v1/openapi.json"})
PUBLIC_PREFIXES = ("/static/",)


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
            g.tenant = _tenant_of_request(policy, svc)
            svc.quotas.take_request(g.tenant)
        except redis.RedisError as exc:
            raise ServiceUnavailable("the key and quota store is unavailable") from exc

    return policy


def current_tenant() -> str:
    """The tenant the current request acts for."""
    tenant: str | None = g.get("tenant")
    if tenant is None:
        raise RuntimeError("current_tenant() called outside an authenticated request")
    return tenant


def _tenant_of_request(policy: AuthPolicy, svc: Services) -> str:
    if policy.open_for(socket_peer(request), via_proxy(request)):
        return LOCAL_TENANT
    client = request.remote_addr or "unknown"
    if not (request.headers.get("Authorization") or request.headers.get("X-API-Key", "").strip()):
        raise Unauthorized(
            "an API key is required: send 'Authorization: Bearer <key>' "
            "(an operator creates keys with 'colorize keys create')"
        )
    svc.quotas.check_auth_failures(client)
    try:
        key = _authenticate(svc.keys)
    except Unauthorized:
        svc.quotas.take_auth_failure(client)  # RateLimited instead, once the address has none left
        raise
    g.api_key_id = key.id
    return key.tenant


def _authenticate(keys: KeyStore) -> ApiKey:
    token = _presented_key()
    key = keys.authenticate(token) if token is not None else None
    if key is None:
        raise Unauthorized("the API key is not valid")
    if key.revoked:
        raise Unauthorized("the API key has been revoked", key_id=key.id)
    return key


def _presented_key() -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None
