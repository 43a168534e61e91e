"""Submitting, inspecting and canceling jobs."""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from flask import Blueprint, Response, jsonify, request, url_for

from api.idempotency import IdempotencyStore, idempotency_key, request_fingerprint
from api.routes.metrics import api_metrics
from api.services import Services, services
from api.tenancy import current_tenant
from shared.archives import detect_source_kind, output_name
from shared.callback_urls import WebhookRequest, parse_webhook
from shared.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from shared.ids import new_id
from shared.jobs import Item, Job, NewItem, job_document
from shared.manifests import MAX_TEMPERATURE, MIN_TEMPERATURE, ModelManifest, load_manifest
from shared.object_keys import source_key
from worker.celery_app import start_job

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)

# Enough leading bytes to tell every supported image and archive kind apart.
SNIFF_BYTES = 512
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# Marks the answer to a repeated Idempotency-Key: the job an earlier request created.
REPLAYED_HEADER = "Idempotent-Replayed"


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    svc = services()
    if request.mimetype != "multipart/form-data" and not request.is_json:
        raise UnsupportedMediaType("send multipart/form-data with a 'file' field, or JSON with an 'upload_id'")
    headers = {}
    key = idempotency_key(request)
    if key is None:
        job = _new_job(svc)
    else:
        job, replayed = _job_once(svc, key)
        if replayed:
            headers[REPLAYED_HEADER] = "true"
    headers["Location"] = svc.url(f"/v1/jobs/{job.id}")
    return jsonify(job_view(svc, job)), 202, headers


def _new_job(svc: Services) -> Job:
    tenant = current_tenant()
    form = request.mimetype == "multipart/form-data"
    job_id = new_id()
    # Quotas first: a refused submission reads and stores nothing.
    with svc.quotas.admit_job(tenant, job_id):
        webhook = parse_webhook(request.form if form else json_object(), svc.settings)
        if form:
            job = _job_from_form(svc, job_id, webhook)
        else:
            job = _job_from_upload(svc, job_id, json_object(), webhook)
    api_metrics().jobs_created.labels(job.source_kind).inc()
    log.info("job created", extra={"job_id": job.id, "tenant": tenant, "source_kind": job.source_kind})
    return job


def _job_once(svc: Services, key: str) -> tuple[Job, bool]:
    """The job of this Idempotency-Key: created now, or by an earlier request (True)."""
    store = IdempotencyStore(svc.redis, svc.settings.result_ttl_s)
    tenant = current_tenant()
    fingerprint = request_fingerprint(request)
    while True:
        claim = store.claim(tenant, key, fingerprint)
        if claim.job_id is None:
            break
        job = svc.jobs.find(claim.job_id)
        if job is not None:
            return job, True
        store.forget(claim)  # the job expired before its key: the key is free again
    try:
        job = _new_job(svc)
    except BaseException:
        store.release(claim)
        raise
    store.fulfil(claim, fingerprint, job.id)
    return job, False


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    svc = services()
    return jsonify(job_view(svc, svc.jobs.get(job_id, current_tenant())))


@bp.get("/<job_id>/items")
def list_items(job_id: str) -> Response:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    offset = _int_arg("offset", 0, minimum=0)
    limit = _int_arg("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    items = svc.jobs.items(job_id, offset, limit)
    # Past the items registered so far there is no next page yet; "expanded": false tells
    # the client that more may appear.
    more = offset + limit < job.total
    next_url = svc.url(url_for("jobs.list_items", job_id=job_id, offset=offset + limit, limit=limit)) if more else None
    return jsonify({
        "items": [item_view(svc, job, item) for item in items],
        "total": job.total,
        "expanded": job.expanded,
        "next": next_url,
    })


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    svc = services()
    svc.jobs.get(job_id, current_tenant())
    return jsonify(job_view(svc, svc.jobs.cancel(job_id)))


# --- submission ---------------------------------------------------------------------------


def _job_from_form(svc: Services, job_id: str, webhook: WebhookRequest | None) -> Job:
    upload = request.files.get("file")  # reading the form enforces MAX_CONTENT_LENGTH (413)
    if upload is None:
        raise InvalidRequest("the multipart form needs a 'file' field")
    manifest, temperature = parse_options(svc, request.form)
    filename = _clean_filename(upload.filename)
    head = upload.stream.read(SNIFF_BYTES)
    upload.stream.seek(0)
    kind = detect_source_kind(head, filename)
    tenant = current_tenant()
    key = source_key(tenant, job_id)
    size = svc.storage.put_stream(key, upload.stream, content_type=upload.mimetype or "application/octet-stream")
    return _submit(svc, job_id, tenant, key, kind, filename, size, manifest, temperature, webhook)


def _job_from_upload(svc: Services, job_id: str, body: Mapping[str, Any], webhook: WebhookRequest | None) -> Job:
    upload_id = body.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id:
        raise InvalidRequest("JSON job requests need an 'upload_id' (from POST /v1/uploads)")
    filename = body.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequest("'filename' must be a string")
    manifest, temperature = parse_options(svc, body)
    tenant = current_tenant()
    upload = svc.uploads.get(upload_id, tenant)
    if upload.multipart_id is None and upload.state == "pending" and svc.storage.exists(upload.key):
        svc.uploads.mark_complete(upload.id)  # a single PUT needs no completion call
    size = svc.storage.size(upload.key) if svc.storage.exists(upload.key) else 0
    if size > svc.settings.limits.max_upload_bytes:
        raise PayloadTooLarge(f"the upload is larger than {svc.settings.limits.max_upload_bytes} bytes")
    svc.uploads.claim(upload.id, job_id)
    try:
        filename = _clean_filename(filename or upload.filename)
        stream = svc.storage.open_stream(upload.key)
        try:
            head = stream.read(SNIFF_BYTES)
        finally:
            stream.close()
        kind = detect_source_kind(head, filename)
        job = _submit(svc, job_id, tenant, upload.key, kind, filename, size, manifest, temperature, webhook)
    except Exception:
        svc.uploads.release(upload.id)
        raise
    svc.uploads.extend_expiry(upload, job.expires_at)
    return job


def _submit(svc: Services, job_id: str, tenant: str, key: str, kind: str, filename: str | None, size: int,
            manifest: ModelManifest, temperature: float, webhook: WebhookRequest | None) -> Job:
    common = dict(tenant=tenant, model=manifest.name, temperature=temperature, source_kind=kind,
                  source_key=key, source_filename=filename, job_id=job_id,
                  callback_url=webhook.url if webhook else None, webhook_events=webhook.events if webhook else ())
    if kind == "image":
        # An archive's images are counted as the worker expands it; a single image here.
        svc.quotas.take_image(tenant)
        path = filename or "image"
        job = svc.jobs.create_job(**common, single_item=NewItem(0, path, output_name(path), size))
    else:
        job = svc.jobs.create_job(**common)
    start_job(svc.celery, job)
    return job


def parse_options(svc: Services, source: Mapping[str, Any]) -> tuple[ModelManifest, float]:
    """The job's model (installed, else ModelNotFound) and effective temperature."""
    name = source.get("model") or svc.settings.model
    if not isinstance(name, str):
        raise InvalidRequest("'model' must be a string")
    manifest = load_manifest(svc.settings.models_dir, name)
    raw = source.get("temperature")
    if raw is None or raw == "":
        return manifest, manifest.temperature
    if isinstance(raw, bool):
        raise InvalidRequest("'temperature' must be a number")
    try:
        temperature = float(raw)
    except (TypeError, ValueError):
        raise InvalidRequest("'temperature' must be a number", temperature=str(raw)) from None
    if not math.isfinite(temperature) or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(
            f"'temperature' must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}",
            minimum=MIN_TEMPERATURE, maximum=MAX_TEMPERATURE,
        )
    return manifest, temperature


def _clean_filename(name: str | None) -> str | None:
    """The file's own name, without any client-side folders."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base or None


# --- views --------------------------------------------------------------------------------


def job_view(svc: Services, job: Job) -> dict[str, Any]:
    return job_document(job, svc.settings.public_url)


def item_view(svc: Services, job: Job, item: Item) -> dict[str, Any]:
    done = item.status == "done"
    return {
        "index": item.index,
        "path": item.path,
        "output_path": item.output_path,
        "status": item.status,
        "size": item.size,
        "result_url": svc.url(f"/v1/jobs/{job.id}/items/{item.index}/result") if done else None,
        "error": item.error,
    }


# --- request helpers ----------------------------------------------------------------------


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _int_arg(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidRequest(f"'{name}' must be {bound}")
    return value
