"""Callback URLs, and the webhook part of a job request.

:func:`parse_callback_url` reads every URL the service calls for a tenant: callback URLs,
stored connections' S3 endpoints and URL sources (``field`` names what the tenant sent). Their
hosts' addresses are checked by :mod:`shared.network.addresses`.

A job may carry a callback URL and the events it wants. The callback host is resolved and every
address checked twice: when the job is created (:func:`parse_webhook`) and again at each
delivery attempt (``worker.webhook_delivery``), which then connects to the very address it
checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.errors import InvalidRequest
from shared.jobs.documents import EVENTS
from shared.network.addresses import AddressPolicy, Resolver, permitted_addresses, resolve
from shared.settings import Settings

MAX_URL_LENGTH = 2048


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
    permitted_addresses(target, AddressPolicy.from_settings(settings), resolver, field="callback_url")
    return WebhookRequest(url=target.url, events=parse_events(source.get("events")))
