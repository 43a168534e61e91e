"""Downloading results: one image by redirect, or all of them as one streamed zip, with
``manifest.json`` (how each item ended, ``shared/jobs/result_manifests.py``) as its last entry."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, redirect
from werkzeug.wrappers import Response as BaseResponse
from zipstream import ZIP_STORED, ZipStream

from api.services import Services, services
from api.tenancy import current_tenant
from shared.errors import Conflict, NotFound
from shared.jobs.result_manifests import manifest_chunks
from shared.jobs.store import JobStore
from shared.storage.destinations import MANIFEST_NAME
from shared.storage.object_keys import result_key
from shared.storage.object_store import Storage

bp = Blueprint("results", __name__, url_prefix="/v1/jobs")

READ_CHUNK_BYTES = 256 * 1024


@bp.get("/<job_id>/items/<int:index>/result")
def item_result(job_id: str, index: int) -> BaseResponse:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    item = svc.jobs.item(job_id, index)
    if item.status != "done":
        raise NotFound(f"item {index} of job {job_id} has no result ({item.status})", status=item.status)
    if not _kept_in_service(svc, job_id):
        raise NotFound(f"the results of job {job_id} went to its destination only", status=item.status)
    url = svc.storage.presign_get(
        result_key(job.tenant, job_id, index, job.output.format),
        download_name=item.output_path.rsplit("/", 1)[-1],
        expires_s=svc.settings.presign_ttl_s,
    )
    return redirect(url, code=302)


@bp.get("/<job_id>/results.zip")
def results_zip(job_id: str) -> Response:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    if not job.is_terminal:
        # A zip of the results so far would look like the whole answer; single results are there meanwhile.
        raise Conflict(
            f"job {job_id} is {job.status}: results.zip is served once it has finished "
            "(GET .../items/{n}/result serves each finished image meanwhile)",
            status=job.status,
        )
    # Image data (JPEG, WebP, deflated PNG) does not compress: store it, which also keeps the
    # stream cheap to produce.
    archive = ZipStream(compress_type=ZIP_STORED)
    if _kept_in_service(svc, job_id):
        for item_index, output_path in _done_results(svc.jobs, job_id):
            key = result_key(job.tenant, job_id, item_index, job.output.format)
            archive.add(_object_chunks(svc.storage, key), output_path)
    # Last, so that a result named manifest.json cannot hide it (zip readers keep the last of a name).
    archive.add(manifest_chunks(svc.jobs, job), MANIFEST_NAME)
    response = Response(archive, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{job_id}.zip"'
    return response


def _kept_in_service(svc: Services, job_id: str) -> bool:
    """False when the job's results were written to its destination only."""
    destination = svc.destinations.get(job_id)
    return destination is None or destination.keep_in_service


def _done_results(jobs: JobStore, job_id: str) -> Iterator[tuple[int, str]]:
    for item in jobs.done_items(job_id):
        yield item.index, item.output_path


def _object_chunks(storage: Storage, key: str) -> Iterator[bytes]:
    """The object's bytes, fetched only when the zip stream reaches it."""
    stream = storage.open_stream(key)
    try:
        while chunk := stream.read(READ_CHUNK_BYTES):
            yield chunk
    finally:
        stream.close()
