"""S3 object storage through boto3 (the key layout is :mod:`shared.storage.object_keys`).

The API and the workers reach the store through ``settings.s3_endpoint_url``; presigned URLs
are built for ``settings.s3_public_endpoint_url`` when clients reach the store at another
address (a container network, a proxy), else for the same endpoint.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from shared.errors import InvalidRequest, NotFound, ServiceUnavailable
from shared.settings import Settings
from shared.storage.readers import CountingReader, SeekableObject, StreamingBodyReader
from shared.storage.s3_clients import ClientPatience, S3Endpoint, s3_client
from shared.storage.s3_errors import error_code, http_status, translated_errors

if TYPE_CHECKING:  # boto3-stubs, installed with the test extra for the type check
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedMultipartUploadTypeDef, CORSRuleTypeDef

# --- storage ------------------------------------------------------------------------------

# Parts of server-side streamed uploads. s3transfer keeps up to ten parts in memory per
# upload, so this bounds memory at 80 MiB per stream; 10,000 parts still allow 78 GiB.
_STREAM_PART_BYTES = 8 * 1024**2
# Seekable reads fetch at most this much per GET, so a seek costs at most one such range.
_SEEKABLE_RANGE_BYTES = 4 * 1024**2
_SEEKABLE_BUFFER_BYTES = 256 * 1024
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_MAX_PART_NUMBER = 10_000

_BAD_PART_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"})
# Browsers (the web page, api/web.py) read results and upload parts through presigned URLs.
# The signature in each URL is what authorizes it, so any origin may send one; the page needs
# each part's ETag to complete a multipart upload.
BROWSER_CORS_RULES: list[CORSRuleTypeDef] = [
    {
        "AllowedOrigins": ["*"],
        "AllowedMethods": ["GET", "HEAD", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3600,
    }
]
# Stores without bucket CORS configuration answer these; their own CORS policy then applies.
_NO_CORS_CODES = frozenset({"NotImplemented", "MethodNotAllowed", "501"})


# Patience of the clients: the main one waits out a busy store; readiness checks answer quickly;
# presigned URLs are only signed, never sent.
_MAIN = ClientPatience(max_attempts=5, connect_timeout_s=5.0, read_timeout_s=60.0, max_pool_connections=32)
_PROBE = ClientPatience(max_attempts=1, connect_timeout_s=2.0, read_timeout_s=5.0, max_pool_connections=32)
_PRESIGN = ClientPatience(max_attempts=1, connect_timeout_s=5.0, read_timeout_s=60.0, max_pool_connections=32)


class Storage:
    """One bucket of an S3-compatible store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self._client = self._make_client(settings.s3_endpoint_url, _MAIN)

    def _make_client(self, endpoint_url: str | None, patience: ClientPatience) -> S3Client:
        settings = self.settings
        endpoint = S3Endpoint(
            endpoint_url, settings.s3_region, settings.aws_access_key_id, settings.aws_secret_access_key
        )
        return s3_client(endpoint, patience)

    @cached_property
    def _probe_client(self) -> S3Client:
        # Readiness checks must answer quickly, not wait out the retries of the main client.
        return self._make_client(self.settings.s3_endpoint_url, _PROBE)

    @cached_property
    def _presign_client(self) -> S3Client:
        public = self.settings.s3_public_endpoint_url
        if public is None or public == self.settings.s3_endpoint_url:
            return self._client
        return self._make_client(public, _PRESIGN)

    # --- bucket ---------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist, open to browsers (``BROWSER_CORS_RULES``).

        An existing bucket is left as it is, CORS rules included.
        """
        with translated_errors():
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if http_status(exc) != 404:
                    raise
            params: dict[str, Any] = {"Bucket": self.bucket}
            if self.settings.s3_region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
            try:
                self._client.create_bucket(**params)
            except ClientError as exc:
                if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            try:
                self._client.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": BROWSER_CORS_RULES})
            except ClientError as exc:
                if error_code(exc) not in _NO_CORS_CODES:
                    raise

    def ping(self) -> None:
        """Raise ServiceUnavailable unless the store answers and the bucket exists."""
        with translated_errors():
            try:
                self._probe_client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if http_status(exc) == 404:
                    raise ServiceUnavailable(f"the storage bucket {self.bucket!r} does not exist") from exc
                raise

    # --- objects ----------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with translated_errors(key):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def put_stream(self, key: str, fileobj: IO[bytes], content_type: str = "application/octet-stream") -> int:
        """Upload everything ``fileobj`` yields (multipart when large); return the byte count."""
        reader = CountingReader(fileobj)
        config = TransferConfig(
            multipart_threshold=_STREAM_PART_BYTES, multipart_chunksize=_STREAM_PART_BYTES, max_concurrency=4
        )
        with translated_errors(key):
            # s3transfer only reads it, as a stream that cannot seek.
            self._client.upload_fileobj(
                cast("IO[bytes]", reader), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=config
            )
        return reader.count

    def get_bytes(self, key: str) -> bytes:
        with translated_errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from byte ``start`` on (fewer where the object ends first)."""
        if length <= 0:
            return b""
        with translated_errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            return response["Body"].read()

    def open_stream(self, key: str) -> BinaryIO:
        """A forward-only reader of the object; memory stays at one buffer whatever its size."""
        with translated_errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        return io.BufferedReader(StreamingBodyReader(response["Body"], key), buffer_size=256 * 1024)

    def open_seekable(self, key: str) -> BinaryIO:
        """A read-only, seekable reader served by ranged GETs (zip central directories, random access)."""
        self.size(key)  # NotFound now rather than at the first read
        reader = SeekableObject(
            self.bucket,
            key,
            client=self._client,
            defer_seek=True,
            buffer_size=_SEEKABLE_BUFFER_BYTES,
            range_chunk_size=_SEEKABLE_RANGE_BYTES,
        )
        reader.name = key
        # A binary file (io.BufferedIOBase); typing's IO is a class that io's readers do not derive from.
        return cast(BinaryIO, reader)

    def size(self, key: str) -> int:
        with translated_errors(key):
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        with translated_errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", ()):
                    yield entry["Key"]

    def delete(self, key: str) -> None:
        """Delete one object; one that does not exist is fine."""
        with translated_errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many were deleted."""
        if not prefix:
            raise ValueError("refusing to delete the whole bucket")
        deleted = 0
        batch: list[str] = []
        for key in self.iter_keys(prefix):
            batch.append(key)
            if len(batch) == _DELETE_BATCH:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def _delete_batch(self, keys: list[str]) -> int:
        with translated_errors():
            response = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise ServiceUnavailable(
                f"storage could not delete {len(errors)} objects, e.g. {first.get('Key')!r}: {first.get('Code')}"
            )
        return len(keys)

    # --- presigned URLs -------------------------------------------------------------------

    def _expiry(self, expires_s: int | None) -> int:
        return self.settings.presign_ttl_s if expires_s is None else expires_s

    def presign_get(self, key: str, download_name: str | None = None, expires_s: int | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if download_name:
            params["ResponseContentDisposition"] = _attachment(download_name)
        return self._presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self._expiry(expires_s)
        )

    def presign_put(self, key: str, size: int | None = None, expires_s: int | None = None) -> str:
        """A URL to PUT the object with; with ``size``, its Content-Length is signed: the store
        refuses (403) a body of any other length."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if size is not None:
            params["ContentLength"] = size
        return self._presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=self._expiry(expires_s)
        )

    # --- multipart uploads by clients -----------------------------------------------------

    def create_multipart(self, key: str) -> str:
        with translated_errors(key):
            return self._client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def presign_part(
        self, key: str, upload_id: str, part_number: int, size: int | None = None, expires_s: int | None = None
    ) -> str:
        """A URL to PUT one part with; with ``size``, its Content-Length is signed (as ``presign_put``)."""
        _check_part_number(part_number)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
        if size is not None:
            params["ContentLength"] = size
        return self._presign_client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=self._expiry(expires_s)
        )

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        """Join uploaded parts, given as ``[{"part_number": n, "etag": "..."}]``."""
        for part in parts:
            _check_part_number(part["part_number"])
        ordered = sorted(parts, key=lambda part: part["part_number"])
        payload: CompletedMultipartUploadTypeDef = {
            "Parts": [{"PartNumber": p["part_number"], "ETag": p["etag"]} for p in ordered]
        }
        with translated_errors(key):
            try:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload=payload
                )
            except ClientError as exc:
                if error_code(exc) in _BAD_PART_CODES:
                    raise InvalidRequest(f"the upload parts were rejected: {error_code(exc)}") from exc
                raise

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard an unfinished multipart upload; one that is already gone is fine."""
        try:
            with translated_errors(key):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except NotFound:
            pass


def _check_part_number(part_number: int) -> None:
    if isinstance(part_number, bool) or not isinstance(part_number, int) or not 1 <= part_number <= _MAX_PART_NUMBER:
        raise InvalidRequest(f"part numbers run from 1 to {_MAX_PART_NUMBER}, not {part_number!r}")


def _attachment(filename: str) -> str:
    """A Content-Disposition naming the download, with an ASCII fallback and the UTF-8 name."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
