"""The service's own store is never a tenant's connection, whatever the address rules allow.

Its credentials open every tenant's files, so a stored connection may neither lead to it (its
endpoint, or where clients reach it, by name or by any address these resolve to; loopback and
unspecified addresses count as one host) nor carry its access key. Checked when a connection is
stored and again whenever a worker connects to it (:mod:`shared.tenancy.stored_connections`).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import InvalidRequest, ServiceStoreEndpoint
from shared.network.addresses import IPAddress, Resolver, unmapped
from shared.settings import Settings
from shared.webhooks.callback_urls import CallbackTarget, parse_callback_url

_MESSAGE = "'endpoint_url' leads to the service's own store, which no connection may use"


def check_not_service_store(
    target: CallbackTarget, addresses: Sequence[IPAddress], settings: Settings, resolver: Resolver
) -> None:
    """ServiceStoreEndpoint when ``target`` (resolved to ``addresses``) is one of the service's store endpoints."""
    for store in _store_targets(settings):
        if store.port != target.port:
            continue
        if store.host.lower().rstrip(".") == target.host.lower().rstrip("."):
            raise ServiceStoreEndpoint(_MESSAGE, field="endpoint_url")
        try:
            store_addresses = resolver(store.host, store.port)
        except InvalidRequest:
            continue  # a store that does not resolve is not where the connection leads
        if any(_same_host(ours, theirs) for ours in store_addresses for theirs in addresses):
            raise ServiceStoreEndpoint(_MESSAGE, field="endpoint_url", address=str(addresses[0]))


def check_not_service_credentials(access_key_id: str, settings: Settings) -> None:
    if settings.aws_access_key_id and access_key_id == settings.aws_access_key_id:
        raise ServiceStoreEndpoint(
            "'access_key_id' is the service's own, which no connection may use", field="access_key_id"
        )


def _store_targets(settings: Settings) -> list[CallbackTarget]:
    targets = []
    for url in (settings.s3_endpoint_url, settings.s3_public_endpoint_url):
        if url is not None:
            try:
                targets.append(parse_callback_url(url, field="s3_endpoint_url"))
            except InvalidRequest:
                continue
    return targets


def _same_host(a: IPAddress, b: IPAddress) -> bool:
    a, b = unmapped(a), unmapped(b)
    return a == b or (_this_host(a) and _this_host(b))


def _this_host(address: IPAddress) -> bool:
    return address.is_loopback or address.is_unspecified
