"""A tenant's bucket, reached through one of its stored connections (:mod:`shared.tenancy.stored_connections`).

Only what sources and destinations need: objects listed under a prefix (ListObjectsV2, a page
at a time), one object read within a size limit and a whole-transfer deadline
(:mod:`shared.storage.transfer_deadlines`), one object written. Every failure is the
tenant's to act on, so each becomes an item error (missing, refused, unreachable) rather than
an outage of the service; the client makes few attempts and waits briefly, as a slow store is
the tenant's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import (
    EntryTooLarge,
    InvalidRequest,
    ServiceStoreEndpoint,
    SourceForbidden,
    SourceNotFound,
    SourceUnreachable,
)
from shared.network.addresses import ForbiddenAddress, Resolver, resolve
from shared.settings import Settings
from shared.storage.pinned_connections import pin_s3_client
from shared.storage.s3_clients import ClientPatience, S3Endpoint, s3_client
from shared.storage.transfer_deadlines import TransferDeadline, read_body
from shared.tenancy.service_store import check_not_service_credentials
from shared.tenancy.stored_connections import Connection, endpoint_addresses

LIST_PAGE_SIZE = 1000  # the most one ListObjectsV2 call returns
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_REFUSED = frozenset({"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


# A slow store is the tenant's: few attempts, brief waits. Keys and prefixes come from tenants,
# so parameters are validated.
_PATIENCE = ClientPatience(
    max_attempts=3, connect_timeout_s=5.0, read_timeout_s=30.0, max_pool_connections=8, validate_parameters=True
)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING or status == 404:
            raise SourceNotFound(f"{what}: not found ({code or status})", code=code) from exc
        if code in _REFUSED or status in (401, 403):
            raise SourceForbidden(f"{what}: access refused ({code or status})", code=code) from exc
        raise SourceUnreachable(f"{what}: the store answered {code or status}", code=code) from exc
    except BotoCoreError as exc:
        raise SourceUnreachable(f"{what}: the store is unreachable ({exc})") from exc


class ConnectedBucket:
    """The bucket of one connection, its endpoint checked against the address rules first and
    its connections made to the address checked."""

    def __init__(self, connection: Connection, settings: Settings, resolver: Resolver = resolve) -> None:
        self.connection = connection
        self.bucket = connection.bucket
        self._limits = settings.limits
        try:
            self.target, self.addresses = endpoint_addresses(connection.endpoint_url, settings, resolver)
            check_not_service_credentials(connection.access_key_id, settings)
        except (ForbiddenAddress, ServiceStoreEndpoint) as exc:
            raise SourceForbidden(f"connection {connection.name!r}: {exc.message}") from exc
        except InvalidRequest as exc:
            raise SourceUnreachable(f"connection {connection.name!r}: {exc.message}") from exc
        endpoint = S3Endpoint(
            connection.endpoint_url, connection.region, connection.access_key_id, connection.secret_access_key
        )
        self._client: Any = s3_client(endpoint, _PATIENCE)
        # Connections go to the address checked, never to a second DNS answer (rebinding).
        pin_s3_client(self._client, str(self.addresses[0]))

    def resolves_as_checked(self, resolver: Resolver = resolve) -> bool:
        """Whether the endpoint's host still resolves to the addresses checked (a host that no
        longer resolves does not)."""
        try:
            return set(resolver(self.target.host, self.target.port)) == set(self.addresses)
        except InvalidRequest:
            return False

    def _named(self, key: str) -> str:
        return f"{self.connection.name}:{key}"

    def list_objects(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, in key order, fetched a page at a time
        as the caller goes (it may stop early)."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
            if token:
                params["ContinuationToken"] = token
            listing = f"listing {self._named(prefix)}"
            with self._deadline(listing) as clock:
                try:
                    with _translated(listing):
                        page = self._client.list_objects_v2(**params)
                except SourceUnreachable:
                    clock.check()
                    raise
            for entry in page.get("Contents", ()):
                yield entry["Key"], int(entry.get("Size", 0))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def get(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; EntryTooLarge when it holds more than ``max_bytes``, SourceTooSlow
        when it does not arrive within the settings' deadline and minimum rate."""
        with self._deadline(self._named(key)) as clock:
            try:
                with _translated(self._named(key)):
                    response = self._client.get_object(Bucket=self.bucket, Key=key)
                    body = response["Body"]
                    try:
                        if int(response.get("ContentLength") or 0) > max_bytes:
                            raise EntryTooLarge(f"{key}: larger than {max_bytes} bytes", limit=max_bytes)
                        return read_body(body.read, max_bytes, clock)
                    finally:
                        body.close()
            except SourceUnreachable:
                clock.check()  # a connection cut at the deadline is the source's slowness
                raise

    def _deadline(self, what: str) -> TransferDeadline:
        return TransferDeadline(what, self._limits.source_deadline_s, self._limits.source_min_bytes_per_s)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _translated(f"writing {self._named(key)}"):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
