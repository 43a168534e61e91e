"""boto3 clients for S3-compatible stores: the service's own (:mod:`shared.storage.object_store`)
and tenants' (:mod:`shared.storage.customer_buckets`), configured alike but for their patience
(attempts, timeouts) and connection pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:  # boto3-stubs, installed with the test extra for the type check
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class S3Endpoint:
    """Where a store is and the credentials it is reached with."""

    url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


@dataclass(frozen=True)
class ClientPatience:
    """How many attempts a call makes and how long each waits; how many connections are kept."""

    max_attempts: int
    connect_timeout_s: float
    read_timeout_s: float
    max_pool_connections: int
    # Checking typed, known parameters again costs a fifth of the client's CPU time per request.
    validate_parameters: bool = False


def client_config(patience: ClientPatience) -> Config:
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": patience.max_attempts},
        connect_timeout=patience.connect_timeout_s,
        read_timeout=patience.read_timeout_s,
        max_pool_connections=patience.max_pool_connections,
        # Checksums only where S3 requires them: S3-compatible stores differ in support for
        # the newer default (CRC trailers on every upload), and presigned URLs must not carry them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        parameter_validation=patience.validate_parameters,
    )


def s3_client(endpoint: S3Endpoint, patience: ClientPatience) -> S3Client:
    """A client of its own session (boto3's default session is not safe to share across threads)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        config=client_config(patience),
    )
