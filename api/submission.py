"""Creating a job: from a file sent with the request or from a presigned upload.

The steps, in order: the tenant's quotas admit the job (a refused submission reads and stores
nothing); the webhook options, the output options (``shared.imaging.output_options``) and the model
are checked; the source is stored (a sent file, once its bytes fit the tenant's storage quota)
or claimed (an upload: complete, no larger than declared nor than the size limit, used by no
other job), or, for a source by reference, checked and stored as a short document the
expander reads; a destination is recorded; the job is recorded and its first task enqueued:
a single image goes straight to colorizing (and counts
against the daily image quota now), an archive to expansion (its images count as the worker
finds them).

With an ``Idempotency-Key``, a repeated request gets the job the first one created
(``api/idempotency.py``).
"""

from __future__ import annotations

import io
import logging
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

import redis

from api.idempotency import IdempotencyStore
from api.presigned_uploads import stored_size
from api.request_metrics import api_metrics
from api.services import Services
from shared.colour.hint_rules import HintMap
from shared.colour.hints import Hint
from shared.colour.model_manifests import load_manifest
from shared.errors import ColorizeError, Conflict, HintsNotSupported, InvalidRequest
from shared.ids import new_id
from shared.imaging.output_options import OutputOptions, requested_output
from shared.jobs.entry_names import clean_filename, output_name
from shared.jobs.records import Job, NewItem
from shared.jobs.source_kinds import REFERENCE_KIND, detect_source_kind
from shared.jobs.uploads import Upload, UploadState
from shared.queue.contract import start_job
from shared.storage.destinations import Destination
from shared.storage.object_keys import source_key
from shared.storage.sources import BucketSource, SourceReference, UrlSource, check_source, encode_source
from shared.tenancy.storage_quota import job_owner
from shared.webhooks.callback_urls import WebhookRequest, parse_webhook

log = logging.getLogger(__name__)

# Enough leading bytes to tell every supported image and archive kind apart.
SNIFF_BYTES = 512


@dataclass(frozen=True)
class SentFile:
    """A file that came with the request (a multipart form), not yet stored."""

    stream: IO[bytes]
    filename: str | None
    content_type: str


@dataclass(frozen=True)
class UploadReference:
    """A presigned upload (``POST /v1/uploads``) the job is to use."""

    upload_id: str
    filename: str | None = None  # overrides the upload's own


@dataclass(frozen=True)
class JobRequest:
    tenant: str
    source: SentFile | UploadReference | SourceReference
    model: str | None = None  # None or empty: the server's default model
    temperature: float | None = None  # None: the model's own
    callback_url: str | None = None  # None or empty: no webhooks
    events: Any = None  # as sent: a list or a comma-separated string (shared.webhooks.callback_urls.parse_events)
    destination: Destination | None = None  # results written to a stored connection too (or instead)
    format: str | None = None  # the result's format; None: JPEG (shared.imaging.output_options)
    quality: int | None = None  # None: the server's jpeg_quality (JPEG and WebP only)
    max_side: int | None = None  # None: results as large as their inputs
    # Colour hints (shared.colour.hint_rules): a list for a single image, a map by item path for
    # an archive or a source by reference.
    hints: tuple[Hint, ...] | HintMap = ()


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    fingerprint: str  # of what the request asks for (api.idempotency.request_fingerprint)


@dataclass(frozen=True)
class Submission:
    job: Job
    replayed: bool  # an earlier request with the same Idempotency-Key created the job


@dataclass(frozen=True)
class _Options:
    """What the job is to do, checked."""

    model: str
    temperature: float
    webhook: WebhookRequest | None
    output: OutputOptions
    hints: tuple[Hint, ...] | HintMap


@dataclass(frozen=True)
class _Source:
    """The stored source of a new job."""

    key: str
    kind: str
    filename: str | None
    size: int


def submit(svc: Services, request: JobRequest, idempotent: IdempotentRequest | None = None) -> Submission:
    """Create the job ``request`` asks for; with ``idempotent``, or answer with the job that an
    earlier request with the same key created (a different request with the key: Conflict)."""
    if idempotent is None:
        return Submission(_create(svc, request), replayed=False)
    store = IdempotencyStore(svc.redis, svc.settings.result_ttl_s, svc.settings.redis_namespace)
    while True:
        claim = store.claim(request.tenant, idempotent.key, idempotent.fingerprint)
        if claim.job_id is None:
            break
        job = svc.jobs.find(claim.job_id)
        if job is not None:
            return Submission(job, replayed=True)
        store.forget(claim)  # the job expired before its key: the key is free again
    try:
        job = _create(svc, request)
    except BaseException:
        store.release(claim)
        raise
    store.fulfil(claim, idempotent.fingerprint, job.id)
    return Submission(job, replayed=False)


def _create(svc: Services, request: JobRequest) -> Job:
    job_id = new_id()
    with svc.quotas.admit_job(request.tenant, job_id):
        options = _options(svc, request)
        if request.destination is not None:
            _check_connection(svc, request.tenant, request.destination.connection)
            svc.destinations.set(job_id, request.destination)  # before any worker may look for it
        if isinstance(request.source, SentFile):
            job = _from_sent_file(svc, request.tenant, job_id, request.source, options)
        elif isinstance(request.source, (BucketSource, UrlSource)):
            job = _from_reference(svc, request.tenant, job_id, request.source, options)
        else:
            svc.stored.reserve(request.tenant, job_owner(job_id), 0)  # its results need room
            job = _from_upload(svc, request.tenant, job_id, request.source, options)
    api_metrics().jobs_created.labels(job.source_kind).inc()
    log.info("job created", extra={"job_id": job.id, "tenant": job.tenant, "source_kind": job.source_kind})
    return job


def _options(svc: Services, request: JobRequest) -> _Options:
    webhook = parse_webhook({"callback_url": request.callback_url, "events": request.events}, svc.settings)
    output = requested_output(svc.settings, request.format, request.quality, request.max_side)
    manifest = load_manifest(svc.settings.models_dir, request.model or svc.settings.model)
    temperature = manifest.temperature if request.temperature is None else request.temperature
    if request.hints and not manifest.hints:
        raise HintsNotSupported(
            f"model {manifest.name!r} takes no colour hints; GET /v1/models lists those that do (hints: true)",
            field="hints",
            model=manifest.name,
        )
    if isinstance(request.source, (BucketSource, UrlSource)):
        _check_hint_shape(REFERENCE_KIND, request.hints)
    return _Options(manifest.name, temperature, webhook, output, request.hints)


def _check_hint_shape(kind: str, hints: tuple[Hint, ...] | HintMap) -> None:
    """A list for a single image, a map for anything else: the other would leave hints unused."""
    if not hints or isinstance(hints, tuple) == (kind == "image"):
        return
    if kind == "image":
        raise InvalidRequest(
            "'hints' for a single image is a list of hints, not an object by path", field="hints", kind=kind
        )
    what = "a source by reference" if kind == REFERENCE_KIND else f"an archive ({kind})"
    raise InvalidRequest(
        f"a list of 'hints' is for a single image; for {what}, give an object mapping item paths "
        'to lists of hints, such as {"photos/a.jpg": [...]}',
        field="hints",
        kind=kind,
    )


def _from_sent_file(
    svc: Services, tenant: str, job_id: str, sent: SentFile, options: _Options, kind: str | None = None
) -> Job:
    filename = clean_filename(sent.filename)
    head = sent.stream.read(SNIFF_BYTES)
    kind = kind or detect_source_kind(head, filename)
    size = sent.stream.seek(0, io.SEEK_END)  # the server parsed the form: the file is at hand, seekable
    sent.stream.seek(0)
    owner = job_owner(job_id)
    svc.stored.reserve(tenant, owner, size)
    key = source_key(tenant, job_id)
    try:
        stored = svc.storage.put_stream(key, sent.stream, content_type=sent.content_type)
        return _record_and_enqueue(svc, tenant, job_id, _Source(key, kind, filename, stored), options)
    except BaseException:
        with suppress(ColorizeError, redis.RedisError):  # the failure that got here is the one to report
            if svc.jobs.find(job_id) is None:  # no job owns the source, so no purge would find it
                svc.stored.release(tenant, owner)
                svc.storage.delete(key)
        raise


def _from_reference(svc: Services, tenant: str, job_id: str, source: SourceReference, options: _Options) -> Job:
    """A source by reference: checked (its connection is the tenant's, its URLs may be reached),
    then stored as the job's source object, which the expander reads."""
    check_source(source, svc.settings)
    if isinstance(source, BucketSource):
        _check_connection(svc, tenant, source.connection)
    document = encode_source(source)
    sent = SentFile(io.BytesIO(document), None, "application/json")
    return _from_sent_file(svc, tenant, job_id, sent, options, kind=REFERENCE_KIND)


def _check_connection(svc: Services, tenant: str, name: str) -> None:
    """NotFound unless the tenant has a connection of that name (another tenant's is not seen)."""
    svc.connections.get(tenant, name)


def _from_upload(svc: Services, tenant: str, job_id: str, reference: UploadReference, options: _Options) -> Job:
    upload, size = _claim(svc, tenant, job_id, reference.upload_id)
    try:
        source = _read_upload(svc, upload, size, reference.filename)
        job = _record_and_enqueue(svc, tenant, job_id, source, options)
    except Exception:
        svc.uploads.release(upload.id)
        raise
    # The expander may read the upload as long as the job is kept.
    svc.uploads.extend_expiry(upload, job.expires_at)
    return job


def _claim(svc: Services, tenant: str, job_id: str, upload_id: str) -> tuple[Upload, int]:
    """The upload, bound to this job (complete, within the size limit, used by no other), and its size."""
    upload = svc.uploads.get(upload_id, tenant)
    stored = svc.storage.exists(upload.key)
    size = stored_size(svc, upload) if stored else 0
    if upload.multipart_id is None and upload.state == UploadState.PENDING and stored:
        svc.uploads.mark_complete(upload.id)  # a single PUT needs no completion call
    if upload.state == UploadState.COMPLETE and not stored:
        raise Conflict(f"upload {upload.id} holds no file any more; upload it again", upload_id=upload.id)
    svc.uploads.claim(upload.id, job_id)
    return upload, size


def _read_upload(svc: Services, upload: Upload, size: int, filename: str | None) -> _Source:
    filename = clean_filename(filename or upload.filename)
    stream = svc.storage.open_stream(upload.key)
    try:
        head = stream.read(SNIFF_BYTES)
    finally:
        stream.close()
    kind = detect_source_kind(head, filename)
    return _Source(upload.key, kind, filename, size)


def _record_and_enqueue(svc: Services, tenant: str, job_id: str, source: _Source, options: _Options) -> Job:
    # Known only once the source's first bytes are read; the callers then remove what they stored.
    _check_hint_shape(source.kind, options.hints)
    webhook = options.webhook
    single_hints = options.hints if isinstance(options.hints, tuple) else ()
    create_job = partial(
        svc.jobs.create_job,
        tenant=tenant,
        model=options.model,
        temperature=options.temperature,
        source_kind=source.kind,
        source_key=source.key,
        source_filename=source.filename,
        job_id=job_id,
        callback_url=webhook.url if webhook else None,
        webhook_events=webhook.events if webhook else (),
        output=options.output,
        hints=single_hints,
    )
    if source.kind == "image":
        # An archive's images are counted as the worker expands it; a single image here.
        svc.quotas.take_image(tenant)
        path = source.filename or "image"
        output_path = output_name(path, options.output.extension)
        job = create_job(single_item=NewItem(0, path, output_path, source.size, hints=single_hints))
    else:
        job = create_job()
        if isinstance(options.hints, dict) and options.hints:
            svc.hint_maps.put(job.id, options.hints)  # before the expander may look for it
    start_job(svc.celery, job)
    return job
