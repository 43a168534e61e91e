"""Presigned uploads over HTTP (``api/presigned_uploads.py`` says how they work)."""

from __future__ import annotations

from flask import Blueprint, Response

from api import presigned_uploads as uploads
from api.bodies import json_body, respond
from api.services import services
from api.tenancy import current_tenant
from api.upload_schemas import (
    MultipartPlan,
    MultipartUpload,
    PartUrl,
    SingleUpload,
    UploadComplete,
    UploadCompletion,
    UploadRequest,
)
from shared.timestamps import iso_time

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")


@bp.post("")
def create_upload() -> Response:
    svc = services()
    body = json_body(UploadRequest)
    plan = uploads.plan_upload(svc, current_tenant(), body.size, body.filename)
    if plan.url is not None:
        return respond(
            SingleUpload(upload_id=plan.upload_id, expires_at=iso_time(plan.expires_at), method="PUT", url=plan.url),
            201,
        )
    parts = [PartUrl(part_number=n, url=url) for n, url in enumerate(plan.part_urls, start=1)]
    return respond(
        MultipartUpload(
            upload_id=plan.upload_id,
            expires_at=iso_time(plan.expires_at),
            multipart=MultipartPlan(part_size=plan.part_size, parts=parts),
            complete_url=svc.url(f"/v1/uploads/{plan.upload_id}/complete"),
        ),
        201,
    )


@bp.post("/<upload_id>/complete")
def complete_upload(upload_id: str) -> Response:
    svc = services()
    body = json_body(UploadCompletion)
    size = uploads.complete_upload(svc, current_tenant(), upload_id, body.parts)
    return respond(UploadComplete(upload_id=upload_id, state="complete", size=size))
