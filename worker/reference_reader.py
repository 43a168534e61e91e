"""Reading items by reference: objects of a tenant's connected bucket, and URLs, each read when
its item is processed (:mod:`shared.storage.sources`). Every failure is the item's own error.

A URL's host is resolved and checked at each read, and the request goes to the very address
checked (:func:`shared.webhooks.callback_urls.pinned_pool`); redirects are not followed (an item that
answers one fails with ``source_unreachable``). Bodies are read to at most
``limits.max_entry_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import urllib3

from shared.errors import (
    ColorizeError,
    EntryTooLarge,
    InvalidRequest,
    ItemError,
    NotFound,
    SourceForbidden,
    SourceNotFound,
    SourceUnreachable,
)
from shared.network.addresses import (
    AddressPolicy,
    ForbiddenAddress,
    Resolver,
    permitted_addresses,
    pinned_pool,
    resolve,
)
from shared.settings import Settings
from shared.storage.customer_buckets import ConnectedBucket
from shared.storage.sources import parse_reference
from shared.tenancy.stored_connections import ConnectionStore
from shared.webhooks.callback_urls import parse_callback_url

USER_AGENT = "colorize-sources/1"
FETCH_TIMEOUT_S = 30.0
# Parallel reads of one batch's references (each waits on the network, not on a core).
READ_THREADS = 4
# A connection's client is reused this long: a changed or deleted connection counts soon after.
BUCKET_REUSE_S = 60.0


class ReferenceReader:
    """One worker process's reads by reference, with its connections' clients kept a while."""

    def __init__(self, connections: ConnectionStore, settings: Settings, resolver: Resolver = resolve) -> None:
        self.connections = connections
        self.settings = settings
        self._resolver = resolver
        self._buckets: dict[tuple[str, str], tuple[float, ConnectedBucket]] = {}

    def bucket(self, tenant: str, name: str) -> ConnectedBucket:
        """The tenant's connection ``name``; SourceNotFound when it has none of that name."""
        now = time.monotonic()
        cached = self._buckets.get((tenant, name))
        if cached is not None and now - cached[0] < BUCKET_REUSE_S:
            return cached[1]
        try:
            connection = self.connections.get(tenant, name)
        except NotFound as exc:
            raise SourceNotFound(f"no connection named {name!r}", connection=name) from exc
        except ColorizeError as exc:  # stored under another key, or connections are off
            raise SourceUnreachable(exc.message, connection=name) from exc
        bucket = ConnectedBucket(connection, self.settings, self._resolver)
        self._buckets[(tenant, name)] = (now, bucket)
        return bucket

    def read_many(self, tenant: str, references: Mapping[int, str]) -> dict[int, bytes | ItemError]:
        """Each item's bytes, or its error."""
        if not references:
            return {}
        with ThreadPoolExecutor(min(READ_THREADS, len(references))) as pool:
            futures = {index: pool.submit(self.read, tenant, reference) for index, reference in references.items()}
            results: dict[int, bytes | ItemError] = {}
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                except ItemError as exc:
                    results[index] = exc
            return results

    def read(self, tenant: str, reference: str) -> bytes:
        connection, where = parse_reference(reference)
        limit = self.settings.limits.max_entry_bytes
        if connection is not None:
            return self.bucket(tenant, connection).get(where, limit)
        return self.fetch_url(where)

    def fetch_url(self, url: str) -> bytes:
        limit = self.settings.limits.max_entry_bytes
        try:
            target = parse_callback_url(url, field="source.urls")
            policy = AddressPolicy.from_settings(self.settings)
            address = permitted_addresses(target, policy, self._resolver, field="source.urls")[0]
        except ForbiddenAddress as exc:
            raise SourceForbidden(f"{url}: {exc.message}", address=exc.details.get("address")) from exc
        except InvalidRequest as exc:
            raise SourceUnreachable(f"{url}: {exc.message}") from exc
        pool = pinned_pool(target, address, FETCH_TIMEOUT_S)
        try:
            headers = {"Host": target.host_header, "User-Agent": USER_AGENT}
            response = pool.urlopen(
                "GET", target.path, headers=headers, redirect=False, assert_same_host=False, preload_content=False
            )
            try:
                _check_status(url, response.status)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise EntryTooLarge(f"{url}: larger than {limit} bytes", limit=limit)
                data: bytes = response.read(limit + 1)
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceUnreachable(f"{url}: {type(exc).__name__}: {getattr(exc, 'reason', None) or exc}") from exc
        finally:
            pool.close()
        if len(data) > limit:
            raise EntryTooLarge(f"{url}: larger than {limit} bytes", limit=limit)
        return data


def _check_status(url: str, status: int) -> None:
    if status == 200:
        return
    if status in (404, 410):
        raise SourceNotFound(f"{url}: not found ({status})", status=status)
    if status in (401, 403):
        raise SourceForbidden(f"{url}: access refused ({status})", status=status)
    if 300 <= status < 400:
        raise SourceUnreachable(f"{url}: answered a redirect ({status}), which is not followed", status=status)
    raise SourceUnreachable(f"{url}: answered {status}", status=status)
