"""What clients are shown of a job, and the body of each webhook delivery: one definition each.

The API answers with :class:`JobDocument` (``GET /v1/jobs/{id}`` and friends); webhook
deliveries carry the same document as their ``data`` (:class:`WebhookEvent`). The OpenAPI
description's schemas (``api/openapi/components.py``) are generated from these models, so what
is sent and what is described cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.colour.hint_rules import hint_fields
from shared.imaging.output_options import OutputFormat
from shared.jobs.records import Job, JobStatus
from shared.jobs.source_kinds import SOURCE_KINDS
from shared.timestamps import iso_time

STARTED, PROGRESS, COMPLETED = "started", "progress", "completed"
EVENTS = (STARTED, PROGRESS, COMPLETED)
EVENT_TYPES = {STARTED: "job.started", PROGRESS: "job.progress", COMPLETED: "job.completed"}

Count = Annotated[int, Field(ge=0)]
# ISO 8601 in UTC with milliseconds and a Z (shared.timestamps.iso_time), kept as the text it is.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
# Literal types here and below are built from the constants, so they cannot drift from them;
# mypy cannot evaluate such a Literal (valid-type), pydantic can.
Event = Literal[EVENTS]  # type: ignore[valid-type]


class Document(BaseModel):
    # Exactly the fields declared: what is described is all that is sent.
    model_config = ConfigDict(extra="forbid")


# A job's or an item's error.
class ErrorBrief(Document):
    code: str = Field(json_schema_extra={"example": "corrupt_image"})
    message: str


class JobCounts(Document):
    total: Count
    done: Count
    failed: Count
    pending: Count


class JobSource(Document):
    filename: str | None
    kind: Literal[SOURCE_KINDS]  # type: ignore[valid-type]


class JobWebhook(Document):
    callback_url: str = Field(json_schema_extra={"format": "uri"})
    events: list[Event]


class JobOutput(Document):
    format: Literal[tuple(f.value for f in OutputFormat)]  # type: ignore[valid-type]
    quality: int | None = Field(description="The encoder's quality (jpeg and webp); null for png.")
    max_side: int | None = Field(description="Results are scaled down to fit it; null: as large as their inputs.")


class JobHint(Document):
    """A colour hint as the job was given it (the rules: shared/colour/hint_rules.py)."""

    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    color: str = Field(json_schema_extra={"example": "#1f4fbf"})
    radius: float = Field(None, gt=0, description="Absent: one cell of the model's input grid.")  # type: ignore[assignment]


class UnmatchedHints(Document):
    """Paths of the job's hint map (its request's and its archive's hints.json) that no item has:
    a misspelt path, or an entry the archive lacks. Their hints were not used."""

    count: Count
    paths: list[str] = Field(description="The first 100 of them in sorted order; manifest.json has the same.")


class JobLinks(Document):
    self: str
    items: str
    results_zip: str
    result: str | None = Field(
        default=None, description="A single image's result (a redirect to the JPEG), once it is done; absent otherwise."
    )


# Described as "Job" (api/openapi/components.py).
class JobDocument(Document):
    id: str
    status: Literal[tuple(JobStatus)]  # type: ignore[valid-type]
    counts: JobCounts
    expanded: bool = Field(description="False while an archive is still being read: more items may appear.")
    progress: float = Field(ge=0, le=1)
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    expires_at: Timestamp
    model: str
    temperature: float | None
    source: JobSource
    error: ErrorBrief | None
    webhook: JobWebhook | None
    output: JobOutput
    hints: list[JobHint] = Field(
        None,  # type: ignore[arg-type]
        description="The single image's colour hints, as given; absent when it was given none "
        "(an archive's items show their own).",
    )
    unmatched_hints: UnmatchedHints = Field(  # type: ignore[assignment]
        None,
        description="Once the archive is expanded, the hinted paths no item has; absent when every one matched.",
    )
    links: JobLinks

    @classmethod
    def of(cls, job: Job, public_url: str | None) -> JobDocument:
        """``job`` as clients see it; links are absolute when a public base URL is configured."""

        def link(path: str) -> str:
            return public_url.rstrip("/") + path if public_url else path

        webhook = (
            JobWebhook(callback_url=job.callback_url, events=list(job.webhook_events)) if job.callback_url else None
        )
        document = cls(
            id=job.id,
            status=job.status,
            counts=JobCounts(total=job.total, done=job.done, failed=job.failed, pending=job.pending),
            expanded=job.expanded,
            progress=job.progress,
            created_at=iso_time(job.created_at),
            started_at=iso_time(job.started_at),
            finished_at=iso_time(job.finished_at),
            expires_at=iso_time(job.expires_at),
            model=job.model,
            temperature=job.temperature,
            source=JobSource(filename=job.source_filename, kind=job.source_kind),
            error=ErrorBrief(**job.error) if job.error else None,
            webhook=webhook,
            output=JobOutput(format=job.output.format, quality=job.output.quality, max_side=job.output.max_side),
            links=_links(job, link),
        )
        if job.hints:  # only then: a field left unset is left out
            document.hints = [JobHint(**hint_fields(hint)) for hint in job.hints]
        if job.unmatched_hint_count:
            document.unmatched_hints = UnmatchedHints(count=job.unmatched_hint_count, paths=list(job.unmatched_hints))
        return document


def _links(job: Job, link: Callable[[str], str]) -> JobLinks:
    base = f"/v1/jobs/{job.id}"
    links = JobLinks(self=link(base), items=link(f"{base}/items"), results_zip=link(f"{base}/results.zip"))
    if job.source_kind == "image" and job.done:
        links.result = link(f"{base}/items/0/result")  # only then: a link left unset is left out
    return links


class WebhookEvent(Document):
    """The body of a webhook delivery."""

    type: Literal[tuple(EVENT_TYPES.values())]  # type: ignore[valid-type]
    timestamp: Timestamp
    sequence: int = Field(
        ge=1,
        description="Numbers the job's events in the order they happened, from 1. "
        "Deliveries are made in that order where they can be; a receiver that sees a "
        "number lower than one it has applied can drop the event as stale.",
    )
    data: JobDocument
