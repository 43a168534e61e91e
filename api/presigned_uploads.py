"""Presigned uploads: large sources go straight to object storage, never through the API.

A client asks for an upload of a declared size and gets one presigned PUT URL, or one per
part of a multipart upload; it then completes the upload (multipart: with the parts' ETags)
and names it in ``POST /v1/jobs`` (``api/submission.py``).

The declared size is held to: it is reserved against the tenant's storage quota before any URL
is handed out (``shared/tenancy/storage_quota.py``), each URL signs the Content-Length of its body (the
whole file, or that part), and the stored object is measured again when the upload is
completed and when a job claims it; one larger than declared is deleted and refused (413).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from api.services import Services
from api.upload_schemas import UploadedPart
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.ids import new_id
from shared.jobs.entry_names import clean_filename
from shared.jobs.uploads import Upload
from shared.settings import Settings
from shared.storage.object_keys import upload_key
from shared.tenancy.storage_quota import upload_owner

# S3 allows at most this many parts in one multipart upload.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class UploadPlan:
    upload_id: str
    expires_at: float  # when the presigned URLs stop working
    url: str | None  # a single PUT of the whole file; None for a multipart upload
    part_size: int | None = None
    part_urls: Sequence[str] = ()  # part n (from 1) is PUT to part_urls[n - 1]


def check_upload_size(size: int, settings: Settings) -> None:
    """PayloadTooLarge when ``size`` bytes are more than one upload may hold."""
    limit = settings.limits.max_upload_bytes
    if size > limit:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes", limit=limit)


def plan_upload(svc: Services, tenant: str, size: int, filename: str | None) -> UploadPlan:
    """Record an upload of ``size`` bytes and presign where its bytes go."""
    check_upload_size(size, svc.settings)
    upload_id = new_id()
    key = upload_key(tenant, upload_id)
    svc.stored.reserve(tenant, upload_owner(upload_id), size)
    try:
        return _presign(svc, tenant, upload_id, key, size, clean_filename(filename))
    except BaseException:
        svc.stored.release(tenant, upload_owner(upload_id))
        raise


def _presign(svc: Services, tenant: str, upload_id: str, key: str, size: int, filename: str | None) -> UploadPlan:
    ttl_s = svc.settings.presign_ttl_s
    expires_at = time.time() + ttl_s
    part_bytes = svc.settings.multipart_part_bytes
    if size <= part_bytes:
        url = svc.storage.presign_put(key, size=size, expires_s=ttl_s)
        svc.uploads.create(tenant=tenant, filename=filename, size=size, key=key, multipart_id=None, upload_id=upload_id)
        return UploadPlan(upload_id, expires_at, url)
    part_size = max(part_bytes, math.ceil(size / MAX_PARTS))
    multipart_id = svc.storage.create_multipart(key)
    svc.uploads.create(
        tenant=tenant, filename=filename, size=size, key=key, multipart_id=multipart_id, upload_id=upload_id
    )
    count = math.ceil(size / part_size)
    urls = [
        svc.storage.presign_part(key, multipart_id, n, size=min(part_size, size - (n - 1) * part_size), expires_s=ttl_s)
        for n in range(1, count + 1)
    ]
    return UploadPlan(upload_id, expires_at, None, part_size, urls)


def complete_upload(svc: Services, tenant: str, upload_id: str, parts: Sequence[UploadedPart] | None) -> int:
    """Mark the upload complete (assembling a multipart one from ``parts``); its size in bytes."""
    upload = svc.uploads.get(upload_id, tenant)
    if upload.multipart_id is not None:
        if not parts:
            raise InvalidRequest("'parts' must be a non-empty list of {part_number, etag}", field="parts")
        ordered = sorted(parts, key=lambda part: part.part_number)
        svc.storage.complete_multipart(
            upload.key, upload.multipart_id, [{"part_number": p.part_number, "etag": p.etag} for p in ordered]
        )
    size = stored_size(svc, upload)
    svc.uploads.mark_complete(upload.id)
    return size


def stored_size(svc: Services, upload: Upload) -> int:
    """The size of the upload's stored object, now counted against the tenant's storage; an
    object larger than the upload declared (a store that let the body pass its signed length)
    is deleted and refused."""
    size = svc.storage.size(upload.key)
    if size > upload.size:
        svc.storage.delete(upload.key)
        raise PayloadTooLarge(
            f"the upload holds {size} bytes, more than the {upload.size} it declared; it has been deleted",
            limit=upload.size,
            size=size,
        )
    check_upload_size(size, svc.settings)
    svc.stored.settle(upload.tenant, upload_owner(upload.id), size)
    return size
