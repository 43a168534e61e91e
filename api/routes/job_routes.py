"""Submitting, listing, inspecting, canceling and deleting jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, request, url_for

from api.bodies import form_body, query, respond
from api.deletion import delete_job as delete_job_of
from api.hint_requests import form_hints, hints_of
from api.idempotency import REPLAYED_HEADER, idempotency_key, request_fingerprint
from api.job_requests import destination, json_job_body, source_reference
from api.preferences import APPLIED_HEADER, requested_wait, wait_for_end
from api.preferences import HEADER as PREFER_HEADER
from api.schemas import Item, ItemPage, ItemPageQuery, JobFromForm, JobFromUpload, JobList, JobListQuery
from api.services import Services, services
from api.submission import IdempotentRequest, JobRequest, SentFile, UploadReference, submit
from api.tenancy import current_tenant
from shared.colour.hint_rules import hint_fields
from shared.errors import UnsupportedMediaType
from shared.jobs.documents import ErrorBrief, JobDocument, JobHint
from shared.jobs.listing import Cursor, JobFilter
from shared.jobs.records import Item as ItemRecord
from shared.jobs.records import ItemStatus, Job, JobStatus

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
def create_job() -> Response:
    svc = services()
    wait_s = requested_wait(request.headers.getlist(PREFER_HEADER))  # a bad one is refused before anything is made
    job_request = _job_request()
    key = idempotency_key(request)
    idempotent = IdempotentRequest(key, request_fingerprint(request)) if key is not None else None
    submission = submit(svc, job_request, idempotent)
    job, status = submission.job, 202
    headers = {"Location": svc.url(f"/v1/jobs/{job.id}")}
    if submission.replayed:
        headers[REPLAYED_HEADER] = "true"
    if wait_s is not None:
        headers[APPLIED_HEADER] = f"wait={wait_s}"
        ended = wait_for_end(svc.jobs, job.id, wait_s)
        if ended is not None:
            job, status = ended, 201
    return respond(_document(svc, job), status, headers)


@bp.get("")
def list_jobs() -> Response:
    svc = services()
    params = query(JobListQuery)
    where = JobFilter(
        status=JobStatus(params.status) if params.status else None,
        created_after=_unix_time(params.created_after),
        created_before=_unix_time(params.created_before),
    )
    after = Cursor.decode(params.cursor) if params.cursor is not None else None
    page = svc.listing.page(current_tenant(), params.limit, after, where)
    return respond(
        JobList(
            jobs=[_document(svc, job) for job in page.jobs],
            next_cursor=page.next.encode() if page.next is not None else None,
        )
    )


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    svc = services()
    return respond(_document(svc, svc.jobs.get(job_id, current_tenant())))


@bp.get("/<job_id>/items")
def list_items(job_id: str) -> Response:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    page = query(ItemPageQuery)
    items = svc.jobs.items(job_id, page.offset, page.limit)
    # Past the items registered so far there is no next page yet; "expanded": false tells
    # the client that more may appear.
    end = page.offset + page.limit
    more = end < job.total
    return respond(
        ItemPage(
            items=[_item(svc, job, item) for item in items],
            total=job.total,
            expanded=job.expanded,
            next=svc.url(url_for("jobs.list_items", job_id=job_id, offset=end, limit=page.limit)) if more else None,
        )
    )


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    svc = services()
    svc.jobs.get(job_id, current_tenant())
    return respond(_document(svc, svc.jobs.cancel(job_id)))


@bp.delete("/<job_id>")
def delete_job(job_id: str) -> Response:
    delete_job_of(services(), job_id, current_tenant())
    return Response(status=204)


def _unix_time(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _job_request() -> JobRequest:
    tenant = current_tenant()
    if request.mimetype == "multipart/form-data":
        form = form_body(JobFromForm)  # reading the form enforces MAX_CONTENT_LENGTH (413)
        sent = SentFile(form.file.stream, form.file.filename, form.file.mimetype or "application/octet-stream")
        return JobRequest(
            tenant,
            sent,
            form.model,
            form.temperature,
            form.callback_url,
            form.events,
            format=form.format,
            quality=form.quality,
            max_side=form.max_side,
            hints=form_hints(form.hints),
        )
    if request.is_json:
        body = json_job_body()
        source = (
            UploadReference(body.upload_id, body.filename)
            if isinstance(body, JobFromUpload)
            else source_reference(body)
        )
        return JobRequest(
            tenant,
            source,
            body.model,
            body.temperature,
            body.callback_url,
            body.events,
            destination=destination(body.destination),
            format=body.format,
            quality=body.quality,
            max_side=body.max_side,
            hints=hints_of(body.hints),
        )
    raise UnsupportedMediaType(
        "send multipart/form-data with a 'file' field, or JSON with an 'upload_id' or a 'source'"
    )


def _document(svc: Services, job: Job) -> JobDocument:
    return JobDocument.of(job, svc.settings.public_url)


def _item(svc: Services, job: Job, item: ItemRecord) -> Item:
    done = item.status == ItemStatus.DONE
    document = Item(
        index=item.index,
        path=item.path,
        output_path=item.output_path,
        status=item.status,
        size=item.size,
        result_url=svc.url(f"/v1/jobs/{job.id}/items/{item.index}/result") if done else None,
        error=ErrorBrief(**item.error) if item.error else None,
    )
    if item.hints:  # only then: a field left unset is left out
        document.hints = [JobHint(**hint_fields(hint)) for hint in item.hints]
    return document
