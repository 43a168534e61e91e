"""The request and response bodies of the HTTP API, defined once as pydantic models.

Routes read requests into these models (``api/bodies.py``) and answer with them; the OpenAPI
description's schemas are generated from them (``api/openapi/components.py``). The job itself, which
webhook events carry too, is ``shared.jobs.documents.JobDocument``; stored connections' bodies are
``api/connection_schemas.py``.

A model's docstring becomes its description in the OpenAPI document, so models without one
are introduced by a comment.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, InstanceOf, WithJsonSchema
from werkzeug.datastructures import FileStorage

from shared.colour.hint_rules import hint_list_schema, hint_map_schema
from shared.colour.model_manifests import MAX_TEMPERATURE, MIN_TEMPERATURE
from shared.imaging.output_options import MAX_QUALITY, MIN_QUALITY, OutputFormat
from shared.jobs.documents import EVENTS, Count, Document, ErrorBrief, Event, JobDocument, JobHint, Timestamp
from shared.jobs.records import ItemStatus, JobStatus
from shared.storage.sources import MAX_KEY_LENGTH
from shared.tenancy.stored_connections import NAME_PATTERN
from shared.webhooks.callback_urls import MAX_URL_LENGTH
from shared.webhooks.events import SECRET_PREFIX, DeliveryOutcome

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_JOB_PAGE = 100
DEFAULT_JOB_PAGE = 20


class RequestBody(BaseModel):
    """Fields a request may leave out have a default; unknown fields are ignored."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    # The message for any failure of the field named, where a generic one would say less.
    field_messages: ClassVar[dict[str, str]] = {}


# --- jobs -------------------------------------------------------------------------------------

Temperature = Annotated[float, Field(ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE)]
# Checked by shared.webhooks.callback_urls.parse_callback_url, which resolves the host and says precisely
# what is wrong; the schema tells clients (and fuzzers) the shape.
CallbackUrl = Annotated[
    str,
    Field(
        description="http(s) URL that receives signed webhook events (see the callbacks). Hosts that resolve to "
        "loopback, private, link-local or other non-public addresses are refused (400) unless the "
        "server allows them.",
        json_schema_extra={"format": "uri", "maxLength": MAX_URL_LENGTH, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    ),
]
# Built from the enum, so that the schema lists its values inline; mypy cannot evaluate such a
# Literal (an alias of it is no type to it), so it sees the str each value is.
if TYPE_CHECKING:
    _FormatValue = str
else:
    _FormatValue = Literal[tuple(f.value for f in OutputFormat)]
OutputFormatName = Annotated[_FormatValue, Field(description="The results' image format; default: jpeg.")]
Quality = Annotated[
    int,
    Field(
        ge=MIN_QUALITY,
        le=MAX_QUALITY,
        description="Encoder quality for jpeg and webp (not png: 400); default: the server's (90 unless configured).",
    ),
]
# Its maximum is the server's image side limit (api/openapi/components.py adds it; api/submission.py checks it).
MaxSide = Annotated[
    int,
    Field(
        ge=1,
        description="Results whose longest side is longer are scaled down to it, keeping their aspect; "
        "smaller ones are never scaled up. Default: results as large as their inputs.",
    ),
]
EVENT_NAMES_EXAMPLE = "started,completed"
# A list or a comma-separated string, checked by shared.webhooks.callback_urls.parse_events (which owns the names).
JsonEvents = Annotated[
    Any,
    WithJsonSchema(
        {
            "oneOf": [
                # null matches this branch only (OpenAPI 3.0 has no null type of its own).
                {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}, "minItems": 1, "nullable": True},
                {"type": "string", "description": "Comma-separated event names.", "example": EVENT_NAMES_EXAMPLE},
            ]
        }
    ),
]


# --- colour hints (shared/colour/hint_rules.py, which checks them and describes them) ----------

# A list for a single image, a map by item path for an archive: which one a job takes is
# known once its source is (api/submission.py), so the field holds either until then.
JsonHints = Annotated[
    Any,
    WithJsonSchema(
        {
            # null matches the list's branch only (OpenAPI 3.0 has no null type of its own).
            "oneOf": [{**hint_list_schema(), "nullable": True}, hint_map_schema()],
            "description": "Colour hints (a model whose hints is true; 422 hints_not_supported otherwise): "
            "a list for a single image, an object by item path for an archive.",
        }
    ),
]
HintMapField = Annotated[Any, WithJsonSchema({**hint_map_schema(), "nullable": True})]


# --- sources by reference and destinations (shared/storage/sources.py, destinations.py) -----------

ConnectionName = Annotated[str, Field(pattern=NAME_PATTERN, description="A stored connection (POST /v1/connections).")]
KeyPrefix = Annotated[str, Field(max_length=MAX_KEY_LENGTH)]


class BucketSourceRequest(RequestBody):
    """The objects under ``prefix`` (or the ``keys`` named) of a stored connection, read by the
    workers where they are. Each object is an item; a missing, refused, too big or non-image one
    fails as an item."""

    connection: ConnectionName
    prefix: KeyPrefix = Field(
        "", description="Every object under it (listed page by page); item paths are relative to it."
    )
    keys: list[Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]] | None = Field(
        None, min_length=1, description="These objects only (instead of a prefix listing); item paths are the keys."
    )


SourceUrl = Annotated[
    str,
    Field(
        description="An image's http(s) URL, under the address rules of callback URLs (400 when refused).",
        json_schema_extra={"format": "uri", "maxLength": MAX_URL_LENGTH, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    ),
]


class UrlSourceRequest(RequestBody):
    """Images at http(s) URLs; redirects are not followed. Each URL is an item, its path the
    last part of the URL's path."""

    urls: list[SourceUrl] = Field(min_length=1)


def _one_of(schema: dict[str, Any]) -> None:
    # Exactly one: a source that fits both (extra fields are allowed) is refused.
    schema["oneOf"] = schema.pop("anyOf")


# One or the other, as api/job_requests.py reads it.
SourceRequest = Annotated[BucketSourceRequest | UrlSourceRequest, Field(json_schema_extra=_one_of)]


class DestinationRequest(RequestBody):
    """Results are written to ``prefix`` + their output path in the connection's bucket, with
    ``manifest.json`` once the job has finished."""

    connection: ConnectionName
    prefix: KeyPrefix = ""
    keep_in_service: bool = Field(True, description="Keep the results in the service as well (downloads, results.zip).")


# Optional JSON fields may be null, which means the same as leaving them out.
class JsonJobOptions(RequestBody):
    """What a JSON job request may set besides where its images come from."""

    destination: DestinationRequest | None = None
    model: str | None = Field(None, description="An installed model (GET /v1/models); default: the server's.")
    temperature: Temperature | None = None
    callback_url: CallbackUrl | None = None
    events: JsonEvents = Field(
        None, description="Events to send: " + ", ".join(EVENTS) + "; default: all. Only with a callback_url."
    )
    format: OutputFormatName | None = None
    quality: Quality | None = None
    max_side: MaxSide | None = None


class JobFromUpload(JsonJobOptions):
    upload_id: str = Field(min_length=1, description="From POST /v1/uploads.")
    filename: str | None = Field(None, description="Overrides the upload's file name.")
    hints: JsonHints = None

    field_messages: ClassVar[dict[str, str]] = {
        "upload_id": "JSON job requests need an 'upload_id' (from POST /v1/uploads) or a 'source'"
    }


class JobFromSource(JsonJobOptions):
    """Images read where they are (no ``upload_id``): a stored connection's objects, or URLs."""

    source: SourceRequest
    hints: HintMapField = None


class JobFromForm(RequestBody):
    """A field sent empty counts as left out, as browsers send the fields of a form whether filled or not."""

    # The size limit in its description is the server's (api/openapi/components.py adds it).
    file: Annotated[InstanceOf[FileStorage], WithJsonSchema({"type": "string", "format": "binary"})]
    # Typed as sent, so that their schemas are not nullable (a form field is never null);
    # None, the default, stands for a field left out.
    model: str = None  # type: ignore[assignment]
    temperature: Temperature = None  # type: ignore[assignment]
    callback_url: CallbackUrl = None  # type: ignore[assignment]
    events: str = Field(  # type: ignore[assignment]
        None,
        description="Comma-separated event names: " + ", ".join(EVENTS) + "; default: all. Only with a callback_url.",
        json_schema_extra={"example": EVENT_NAMES_EXAMPLE},
    )
    format: OutputFormatName = None  # type: ignore[assignment]
    quality: Quality = None  # type: ignore[assignment]
    max_side: MaxSide = None  # type: ignore[assignment]
    # JSON text, read by api/hint_requests.py as the JSON job's hints are (and described as
    # them by api/openapi/components.py).
    hints: str = None  # type: ignore[assignment]

    field_messages: ClassVar[dict[str, str]] = {"file": "the multipart form needs a 'file' field"}


class ItemPageQuery(RequestBody):
    offset: int = Field(0, ge=0)
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class Item(Document):
    index: Count
    path: str = Field(description="The entry's path inside the archive (or the file name).")
    output_path: str = Field(
        description="The result's path in results.zip (ends in the job's output format's extension: .jpg, .png or .webp)."
    )
    # Built from the enum (a Literal mypy cannot evaluate), so that the schema lists its values
    # inline; WebhookDelivery.outcome likewise.
    status: Literal[tuple(ItemStatus)]  # type: ignore[valid-type]
    size: Count | None
    result_url: str | None
    error: ErrorBrief | None
    hints: list[JobHint] = Field(
        None,  # type: ignore[arg-type]
        description="The item's colour hints, as given; absent when it was given none.",
    )


class ItemPage(Document):
    items: list[Item]
    total: Count
    expanded: bool
    next: str | None


def _iso_8601(value: Any) -> datetime:
    # Only ISO 8601 text: pydantic's lax parsing would also take a number as a Unix time.
    if not isinstance(value, str):
        raise ValueError("not ISO 8601 text")  # noqa: TRY004 (pydantic reports ValueError, not TypeError, as invalid input)
    return datetime.fromisoformat(value)


Iso8601 = Annotated[datetime, BeforeValidator(_iso_8601)]
_ISO_8601_MESSAGE = "'{}' must be an ISO 8601 date and time, such as 2026-11-30T12:00:00Z"


# The query of GET /v1/jobs. Times without a zone are UTC.
class JobListQuery(RequestBody):
    limit: int = Field(DEFAULT_JOB_PAGE, ge=1, le=MAX_JOB_PAGE)
    cursor: str | None = Field(None, description="The next_cursor of the page before; with the same filters.")
    status: Literal[tuple(JobStatus)] | None = None  # type: ignore[valid-type]
    created_after: Iso8601 | None = Field(None, description="ISO 8601; jobs created after this time.")
    created_before: Iso8601 | None = Field(None, description="ISO 8601; jobs created before this time.")

    field_messages: ClassVar[dict[str, str]] = {
        name: _ISO_8601_MESSAGE.format(name) for name in ("created_after", "created_before")
    }


class JobList(Document):
    """A page of the tenant's jobs, newest first."""

    jobs: list[JobDocument]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null on the last. A page may hold fewer jobs than "
        "limit (a filter passed over many) and still have a next one."
    )


# --- models, webhooks, health -----------------------------------------------------------------


# Described as "Model". Facts a manifest leaves out are left out here too: typed as sent (not
# nullable in the schema), None until set.
class InstalledModel(Document):
    name: str
    description: str = None  # type: ignore[assignment]
    licence: str = None  # type: ignore[assignment]
    training_data: str = None  # type: ignore[assignment]
    temperature: float
    prior_alpha: float = Field(  # type: ignore[assignment]
        None, description="The strength of the decoding's correction toward rare colours (0: none)."
    )
    input_size: int = Field(ge=1)
    default: bool
    hints: bool = Field(False, description="The model takes colour hints (a job's 'hints').")
    hint_model: str = Field(  # type: ignore[assignment]
        None,
        description="An installed model that takes hints and, given none, colours exactly as this one: "
        "re-colorize a result of this model with hints by it.",
    )


class TemperatureRange(Document):
    min: float
    max: float


class ModelList(Document):
    models: list[InstalledModel]
    default: str | None
    temperature_range: TemperatureRange


class WebhookDelivery(Document):
    message_id: str = Field(description="The webhook-id header of the message.")
    event: Event
    attempt: int = Field(ge=1)
    outcome: Literal[tuple(DeliveryOutcome)]  # type: ignore[valid-type]
    status_code: int | None
    error: str | None
    started_at: Timestamp
    duration_ms: Count
    next_attempt_at: Timestamp | None


class WebhookDeliveries(Document):
    callback_url: str | None
    events: list[Event]
    deliveries: list[WebhookDelivery] = Field(description="Every delivery attempt, oldest first.")


class WebhookSecret(Document):
    secret: str = Field(pattern=f"^{SECRET_PREFIX}[A-Za-z0-9+/=]+$")
    scheme: str


class Health(Document):
    status: Literal["ok"]


class ReadyChecks(Document):
    redis: str
    workers: Count
    storage: str


class Ready(Document):
    status: Literal["ready"]
    checks: ReadyChecks
