"""Presigned uploads: large sources go straight to object storage, never through the API."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, jsonify

from api.routes.jobs import json_object
from api.services import services
from api.tenancy import current_tenant
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.ids import new_id
from shared.object_keys import upload_key
from shared.timestamps import iso_time

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")

# S3 allows at most this many parts in one multipart upload.
MAX_PARTS = 10_000


@bp.post("")
def create_upload() -> tuple[Response, int]:
    svc = services()
    body = json_object()
    size, filename = body.get("size"), body.get("filename")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidRequest("'size' must be a positive integer (bytes)")
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequest("'filename' must be a string")
    limit = svc.settings.limits.max_upload_bytes
    if size > limit:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes", limit=limit)
    tenant = current_tenant()
    upload_id = new_id()
    key = upload_key(tenant, upload_id)
    expires_at = iso_time(time.time() + svc.settings.presign_ttl_s)
    part_bytes = svc.settings.multipart_part_bytes
    if size <= part_bytes:
        url = svc.storage.presign_put(key, expires_s=svc.settings.presign_ttl_s)
        svc.uploads.create(tenant=tenant, filename=filename, size=size, key=key, multipart_id=None,
                           upload_id=upload_id)
        return jsonify({"upload_id": upload_id, "expires_at": expires_at, "method": "PUT", "url": url}), 201
    part_size = max(part_bytes, math.ceil(size / MAX_PARTS))
    multipart_id = svc.storage.create_multipart(key)
    svc.uploads.create(tenant=tenant, filename=filename, size=size, key=key, multipart_id=multipart_id,
                       upload_id=upload_id)
    parts = [
        {"part_number": n, "url": svc.storage.presign_part(key, multipart_id, n, expires_s=svc.settings.presign_ttl_s)}
        for n in range(1, math.ceil(size / part_size) + 1)
    ]
    return jsonify({
        "upload_id": upload_id,
        "expires_at": expires_at,
        "multipart": {"part_size": part_size, "parts": parts},
        "complete_url": svc.url(f"/v1/uploads/{upload_id}/complete"),
    }), 201


@bp.post("/<upload_id>/complete")
def complete_upload(upload_id: str) -> Response:
    svc = services()
    upload = svc.uploads.get(upload_id, current_tenant())
    body = json_object()
    if upload.multipart_id is not None:
        svc.storage.complete_multipart(upload.key, upload.multipart_id, _parts(body.get("parts")))
    size = svc.storage.size(upload.key)
    limit = svc.settings.limits.max_upload_bytes
    if size > limit:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes", limit=limit)
    svc.uploads.mark_complete(upload.id)
    return jsonify({"upload_id": upload.id, "state": "complete", "size": size})


def _parts(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'parts' must be a non-empty list of {part_number, etag}")
    parts = []
    for part in raw:
        if (not isinstance(part, dict) or not isinstance(part.get("part_number"), int)
                or isinstance(part.get("part_number"), bool) or not isinstance(part.get("etag"), str)):
            raise InvalidRequest("each part needs an integer 'part_number' and a string 'etag'")
        parts.append({"part_number": part["part_number"], "etag": part["etag"]})
    return sorted(parts, key=lambda p: p["part_number"])
