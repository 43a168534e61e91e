"""A tenant's bucket, reached through one of its stored connections (:mod:`shared.tenancy.stored_connections`).

Only what sources and destinations need: objects listed under a prefix (ListObjectsV2, a page
at a time), one object read within a size limit, one object written. Every failure is the
tenant's to act on, so each becomes an item error (missing, refused, unreachable) rather than
an outage of the service; the client makes few attempts and waits briefly, as a slow store is
the tenant's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import EntryTooLarge, InvalidRequest, SourceForbidden, SourceNotFound, SourceUnreachable
from shared.network.addresses import ForbiddenAddress, Resolver, resolve
from shared.settings import Settings
from shared.tenancy.stored_connections import Connection, check_endpoint

LIST_PAGE_SIZE = 1000  # the most one ListObjectsV2 call returns
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_REFUSED = frozenset({"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


def _config() -> Config:
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5.0,
        read_timeout=30.0,
        max_pool_connections=8,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
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
    """The bucket of one connection, its endpoint checked against the address rules first."""

    def __init__(self, connection: Connection, settings: Settings, resolver: Resolver = resolve) -> None:
        self.connection = connection
        self.bucket = connection.bucket
        try:
            check_endpoint(connection.endpoint_url, settings, resolver)
        except ForbiddenAddress as exc:
            raise SourceForbidden(f"connection {connection.name!r}: {exc.message}") from exc
        except InvalidRequest as exc:
            raise SourceUnreachable(f"connection {connection.name!r}: {exc.message}") from exc
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=connection.endpoint_url,
            region_name=connection.region,
            aws_access_key_id=connection.access_key_id,
            aws_secret_access_key=connection.secret_access_key,
            config=_config(),
        )

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
            with _translated(f"listing {self._named(prefix)}"):
                page = self._client.list_objects_v2(**params)
            for entry in page.get("Contents", ()):
                yield entry["Key"], int(entry.get("Size", 0))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def get(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; EntryTooLarge when it holds more than ``max_bytes``."""
        with _translated(self._named(key)):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                if int(response.get("ContentLength") or 0) > max_bytes:
                    raise EntryTooLarge(f"{key}: larger than {max_bytes} bytes", limit=max_bytes)
                data: bytes = body.read(max_bytes + 1)
            finally:
                body.close()
        if len(data) > max_bytes:
            raise EntryTooLarge(f"{key}: larger than {max_bytes} bytes", limit=max_bytes)
        return data

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _translated(f"writing {self._named(key)}"):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
