"""The bodies of ``/v1/connections``: a tenant's stored S3-compatible connections, defined once
as pydantic models like the rest (``api/schemas.py``), whose field types they share."""

from __future__ import annotations

from pydantic import Field

from api.schemas import CallbackUrl, ConnectionName, RequestBody
from shared.jobs.documents import Document, Timestamp
from shared.tenancy.stored_connections import BUCKET_PATTERN, DEFAULT_REGION, MAX_CREDENTIAL_LENGTH, REGION_PATTERN


class ConnectionRequest(RequestBody):
    """An S3-compatible store of the tenant's: its credentials are stored encrypted and never
    answered back."""

    name: ConnectionName
    endpoint_url: CallbackUrl = Field(description="The store's base URL; under the same address rules as callbacks.")
    region: str = Field(DEFAULT_REGION, pattern=REGION_PATTERN)
    bucket: str = Field(pattern=BUCKET_PATTERN)
    access_key_id: str = Field(min_length=1, max_length=MAX_CREDENTIAL_LENGTH)
    secret_access_key: str = Field(min_length=1, max_length=MAX_CREDENTIAL_LENGTH)


# Described as "Connection": never its credentials.
class ConnectionInfo(Document):
    name: str
    endpoint_url: str
    region: str
    bucket: str
    created_at: Timestamp


class ConnectionList(Document):
    connections: list[ConnectionInfo]
