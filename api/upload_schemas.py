"""The bodies of ``/v1/uploads``: presigned uploads planned and completed, defined once as
pydantic models like the rest (``api/schemas.py``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from api.schemas import RequestBody
from shared.jobs.documents import Count, Document, Timestamp


# The largest size allowed is the server's (api/openapi/components.py adds it).
class UploadRequest(RequestBody):
    size: int = Field(ge=1, description="Bytes the client will upload.")
    filename: str | None = None

    field_messages: ClassVar[dict[str, str]] = {"size": "'size' must be a positive integer (bytes)"}


class SingleUpload(Document):
    upload_id: str
    expires_at: Timestamp
    method: Literal["PUT"]
    url: str = Field(description="Presigned URL: PUT the whole file to it.")


class PartUrl(Document):
    part_number: int = Field(ge=1)
    url: str = Field(description="Presigned URL: PUT this part to it.")


class MultipartPlan(Document):
    part_size: int = Field(ge=1)
    parts: list[PartUrl]


class MultipartUpload(Document):
    upload_id: str
    expires_at: Timestamp
    multipart: MultipartPlan
    complete_url: str


class UploadedPart(Document):
    part_number: int = Field(ge=1)
    etag: str = Field(description="The ETag header answered to the part's PUT.")


class UploadCompletion(RequestBody):
    # Not nullable in the schema, as a client sends it; None stands for left out (a single upload).
    parts: list[UploadedPart] = Field(
        None,  # type: ignore[arg-type]
        min_length=1,
        description="Required for multipart uploads; ignored for single ones.",
    )


class UploadComplete(Document):
    upload_id: str
    state: Literal["complete"]
    size: Count
