"""Tenants' stored S3 connections: an endpoint, a bucket and credentials, named per tenant.

A job names a connection to read its images from (``source``) or to write its results to
(``destination``); the credentials never leave the service. They are kept in Redis encrypted
with ``settings.connection_key`` (Fernet: AES-128-CBC with an HMAC-SHA256, from the
``cryptography`` package); the rest of the record (endpoint, region, bucket) is kept plain, as
the listing shows it. The endpoint obeys the address rules of every host reached for a tenant
(:mod:`shared.network.addresses`), and is never the service's own store
(:mod:`shared.tenancy.service_store`): checked when the connection is stored and again whenever a
worker connects to it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from redis import Redis

from shared.errors import Conflict, InvalidRequest, NotConfigured, NotFound
from shared.network.addresses import AddressPolicy, IPAddress, Resolver, permitted_addresses, resolve
from shared.redis_keys import RedisKeys
from shared.settings import Settings
from shared.tenancy.service_store import check_not_service_credentials, check_not_service_store
from shared.webhooks.callback_urls import CallbackTarget, parse_callback_url

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# S3's bucket naming rules, loosened to what S3-compatible stores also accept (dots, capitals).
BUCKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$"
REGION_PATTERN = r"^[a-z0-9-]{1,32}$"
MAX_CREDENTIAL_LENGTH = 256
DEFAULT_REGION = "us-east-1"
# Connections one tenant may keep: enough for every store a tenant works with, and a bound on the hash.
MAX_CONNECTIONS = 100


@dataclass(frozen=True)
class ConnectionInfo:
    """A stored connection as its listing shows it: never its credentials."""

    name: str
    endpoint_url: str
    region: str
    bucket: str
    created_at: float


@dataclass(frozen=True)
class Connection(ConnectionInfo):
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)


def check_name(name: str, field_name: str = "name") -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise InvalidRequest(f"'{field_name}' must be 1-64 letters, digits, '-' or '_'", field=field_name)
    return name


def check_endpoint(endpoint_url: str, settings: Settings, resolver: Resolver = resolve) -> str:
    """The endpoint URL as given, once its host resolves only to addresses the service may reach."""
    target, _ = endpoint_addresses(endpoint_url, settings, resolver)
    return target.url.rstrip("/")


def endpoint_addresses(
    endpoint_url: str, settings: Settings, resolver: Resolver = resolve
) -> tuple[CallbackTarget, Sequence[IPAddress]]:
    """The endpoint and the addresses its host resolves to now, each one the service may reach
    (ForbiddenAddress) and none the service's own store (ServiceStoreEndpoint)."""
    target = parse_callback_url(endpoint_url, field="endpoint_url")
    # A query or fragment (even an empty one) means nothing to an S3 client, and whatever it
    # holds would be stored and listed back: refused with a path. (Credentials are refused above.)
    if target.path not in ("", "/") or any(mark in endpoint_url for mark in "?#"):
        raise InvalidRequest(
            "'endpoint_url' must be the store's base URL: scheme, host and port, without a path, query or fragment",
            field="endpoint_url",
        )
    addresses = permitted_addresses(target, AddressPolicy.from_settings(settings), resolver, field="endpoint_url")
    check_not_service_store(target, addresses, settings, resolver)
    return target, addresses


class ConnectionStore:
    """Each tenant's connections, in one Redis hash per tenant."""

    def __init__(self, redis: Redis, settings: Settings, resolver: Resolver = resolve) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = RedisKeys(settings.redis_namespace)
        self._resolver = resolver

    @property
    def _cipher(self) -> Fernet:
        if self.settings.connection_key is None:
            raise NotConfigured("stored connections are off: the server has no COLORIZE_CONNECTION_KEY")
        return Fernet(self.settings.connection_key.encode("ascii"))

    def create(self, tenant: str, connection: Connection) -> ConnectionInfo:
        """Store a new connection (Conflict when the tenant has one of that name)."""
        check_name(connection.name)
        endpoint = check_endpoint(connection.endpoint_url, self.settings, self._resolver)
        check_not_service_credentials(connection.access_key_id, self.settings)
        if not re.fullmatch(BUCKET_PATTERN, connection.bucket):
            raise InvalidRequest("'bucket' is not a valid bucket name", field="bucket")
        if not re.fullmatch(REGION_PATTERN, connection.region):
            raise InvalidRequest("'region' is not a valid region name", field="region")
        for name in ("access_key_id", "secret_access_key"):
            value = getattr(connection, name)
            if not value or len(value) > MAX_CREDENTIAL_LENGTH:
                raise InvalidRequest(f"'{name}' must be 1-{MAX_CREDENTIAL_LENGTH} characters", field=name)
        credentials = json.dumps({"access_key_id": connection.access_key_id, "secret": connection.secret_access_key})
        now = time.time()
        record = {
            "endpoint_url": endpoint,
            "region": connection.region,
            "bucket": connection.bucket,
            "created_at": now,
            "credentials": self._cipher.encrypt(credentials.encode()).decode("ascii"),
        }
        key = self.keys.connections(tenant)
        if self.redis.hlen(key) >= MAX_CONNECTIONS:
            raise Conflict(f"a tenant may keep at most {MAX_CONNECTIONS} connections; delete one first")
        if not self.redis.hsetnx(key, connection.name, json.dumps(record)):
            raise Conflict(f"a connection named {connection.name!r} exists; delete it first", name=connection.name)
        return ConnectionInfo(connection.name, endpoint, connection.region, connection.bucket, now)

    def list(self, tenant: str) -> list[ConnectionInfo]:
        records = self.redis.hgetall(self.keys.connections(tenant))
        infos = [_info(_text(name), json.loads(record)) for name, record in records.items()]
        return sorted(infos, key=lambda info: info.name)

    def get(self, tenant: str, name: str) -> Connection:
        """The connection with its credentials; NotFound when the tenant has none of that name."""
        record = self.redis.hget(self.keys.connections(tenant), check_name(name, "connection"))
        if record is None:
            raise NotFound(f"no connection named {name!r}", connection=name)
        data = json.loads(record)
        try:
            credentials = json.loads(self._cipher.decrypt(data["credentials"].encode("ascii")))
        except InvalidToken:
            raise NotConfigured(
                f"connection {name!r} was stored under another COLORIZE_CONNECTION_KEY; store it again"
            ) from None
        info = _info(name, data)
        return Connection(
            **vars(info), access_key_id=credentials["access_key_id"], secret_access_key=credentials["secret"]
        )

    def delete(self, tenant: str, name: str) -> None:
        # A name no connection could have is simply not there.
        if not re.fullmatch(NAME_PATTERN, name) or not self.redis.hdel(self.keys.connections(tenant), name):
            raise NotFound(f"no connection named {name!r}", connection=name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _info(name: str, data: dict[str, Any]) -> ConnectionInfo:
    return ConnectionInfo(name, data["endpoint_url"], data["region"], data["bucket"], float(data["created_at"]))
