"""Sources by reference: where a job reads its images from outside the service's own store
(where it writes its results to is :mod:`shared.storage.destinations`).

A job created with ``{"source": ...}`` has the source kind ``reference``
(``shared.jobs.source_kinds.REFERENCE_KIND``); its source object in
the store is the reference itself (:func:`encode_source`), which the expander reads and expands:
the objects under a prefix of a stored connection (listed page by page), the keys it names, or
URLs. Each becomes an item whose input (:class:`shared.storage.item_inputs.ItemInput`) carries the
item's reference (:func:`bucket_reference`, :func:`url_reference`); a worker reads it from the
tenant's store or the URL when it processes the item, so nothing is copied into the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import InvalidRequest
from shared.network.addresses import AddressPolicy, Resolver, permitted_addresses, resolve
from shared.settings import Settings
from shared.tenancy.stored_connections import check_name
from shared.webhooks.callback_urls import parse_callback_url

MAX_KEY_LENGTH = 1024  # S3's limit on an object key
_BUCKET, _URL = "s3:", "url:"


@dataclass(frozen=True)
class BucketSource:
    """Objects of a stored connection: every one under ``prefix``, or the ``keys`` named."""

    connection: str
    prefix: str = ""
    keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UrlSource:
    urls: tuple[str, ...]


SourceReference = BucketSource | UrlSource


def check_prefix(prefix: str, field: str) -> str:
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"'{field}' must be a key prefix of at most {MAX_KEY_LENGTH} characters", field=field)
    return prefix


def check_source(source: SourceReference, settings: Settings, resolver: Resolver = resolve) -> SourceReference:
    """The reference, checked: sizes, key lengths, and each URL against the address rules."""
    limit = settings.limits.max_entries
    if isinstance(source, UrlSource):
        if not source.urls or len(source.urls) > limit:
            raise InvalidRequest(f"'source.urls' must list 1 to {limit} URLs", field="source.urls")
        policy = AddressPolicy.from_settings(settings)
        checked: set[tuple[str, int]] = set()
        for url in source.urls:
            target = parse_callback_url(url, field="source.urls")
            if (target.host, target.port) not in checked:  # one lookup per host, however many URLs
                permitted_addresses(target, policy, resolver, field="source.urls")
                checked.add((target.host, target.port))
        return source
    check_name(source.connection, "source.connection")
    check_prefix(source.prefix, "source.prefix")
    if source.keys is not None:
        if not source.keys or len(source.keys) > limit:
            raise InvalidRequest(f"'source.keys' must list 1 to {limit} keys", field="source.keys")
        if not all(0 < len(key) <= MAX_KEY_LENGTH for key in source.keys):
            raise InvalidRequest(f"each of 'source.keys' must be 1 to {MAX_KEY_LENGTH} characters", field="source.keys")
    return source


def encode_source(source: SourceReference) -> bytes:
    if isinstance(source, UrlSource):
        body: dict[str, Any] = {"urls": list(source.urls)}
    else:
        body = {"connection": source.connection, "prefix": source.prefix}
        if source.keys is not None:
            body["keys"] = list(source.keys)
    return json.dumps(body, separators=(",", ":")).encode()


def decode_source(data: bytes) -> SourceReference:
    body = json.loads(data)
    if "urls" in body:
        return UrlSource(tuple(body["urls"]))
    keys = body.get("keys")
    return BucketSource(body["connection"], body.get("prefix", ""), tuple(keys) if keys is not None else None)


# --- item references ------------------------------------------------------------------------


def bucket_reference(connection: str, key: str) -> str:
    return f"{_BUCKET}{connection}/{key}"


def url_reference(url: str) -> str:
    return _URL + url


def parse_reference(reference: str) -> tuple[str | None, str]:
    """(connection, key) of an object, or (None, url) of a URL."""
    if reference.startswith(_URL):
        return None, reference[len(_URL) :]
    if not reference.startswith(_BUCKET):
        raise ValueError(f"not an item reference: {reference!r}")
    connection, _, key = reference[len(_BUCKET) :].partition("/")
    return connection, key


def url_path(url: str) -> str:
    """An item path for a URL: the last part of its path (its host when that is empty)."""
    parts = urlsplit(url)
    name = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return name or parts.hostname or "image"
