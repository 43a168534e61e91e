"""The OpenAPI 3.0 description of the HTTP API, served at ``/v1/openapi.json``.

Built from the same constants the routes use (statuses, limits, event names, public paths),
and checked against the app's URL map by ``tests/test_openapi.py``: a route missing here, or
described here but not served, fails the test suite.
"""

from __future__ import annotations

from typing import Any

from api.errors import HTTP_CODES
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import MAX_KEY_LENGTH
from api.routes.jobs import DEFAULT_PAGE, MAX_PAGE, REPLAYED_HEADER
from api.tenancy import PUBLIC_PATHS
from shared.archives import SOURCE_KINDS
from shared.callback_urls import MAX_URL_LENGTH
from shared.errors import ColorizeError
from shared.jobs import ItemStatus, JobStatus
from shared.manifests import MAX_TEMPERATURE, MIN_TEMPERATURE
from shared.settings import Settings
from shared.webhook_events import EVENT_TYPES, EVENTS, SECRET_PREFIX, DeliveryOutcome

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"

JSON = "application/json"
# Codes api/errors.py gives to failures that are not ColorizeErrors.
OTHER_ERROR_CODES = ("internal_error", "http_error")


def error_codes() -> list[str]:
    """Every code an error body or an item error may carry."""
    codes = set(HTTP_CODES.values()) | set(OTHER_ERROR_CODES)
    pending: list[type[ColorizeError]] = [ColorizeError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes.add(cls.code)
    codes.discard(ColorizeError.code)
    return sorted(codes)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    # OpenAPI 3.0 cannot make a $ref nullable (nullable does not reach into allOf): inline instead.
    assert "$ref" not in schema
    return {**schema, "nullable": True}


def _obj(properties: dict[str, Any], required: list[str] | None = None, extra: bool = False,
         description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    required = list(properties) if required is None else required
    if required:  # OpenAPI 3.0 wants a non-empty list or none
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


TIME = {"type": "string", "format": "date-time"}
# A job's or an item's error.
ERROR_BRIEF = _obj({"code": {"type": "string", "example": "corrupt_image"}, "message": {"type": "string"}})
NULLABLE_TIME = _nullable(TIME)
COUNT = {"type": "integer", "minimum": 0}
CALLBACK_URL = {
    "type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
    "description": "http(s) URL that receives signed webhook events (see the callbacks). Hosts that resolve to "
                   "loopback, private, link-local or other non-public addresses are refused (400) unless the "
                   "server allows them.",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _schemas(settings: Settings) -> dict[str, Any]:
    limits = settings.limits
    return {
        "Error": _obj({
            "error": _obj({
                "code": {"type": "string", "description": "Stable machine-readable code, one of: "
                         + ", ".join(error_codes()) + "."},
                "message": {"type": "string", "description": "What went wrong, for a person."},
                "details": {"type": "object", "additionalProperties": True,
                            "description": "Facts about the failure (a limit, a field, a status)."},
            }, required=["code", "message"]),
        }),
        "Job": _obj({
            "id": {"type": "string"},
            "status": {"type": "string", "enum": list(JobStatus)},
            "counts": _obj({"total": COUNT, "done": COUNT, "failed": COUNT, "pending": COUNT}),
            "expanded": {"type": "boolean", "description": "False while an archive is still being read: "
                         "more items may appear."},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "created_at": TIME,
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "expires_at": TIME,
            "model": {"type": "string"},
            "temperature": _nullable({"type": "number"}),
            "source": _obj({
                "filename": _nullable({"type": "string"}),
                "kind": {"type": "string", "enum": list(SOURCE_KINDS)},
            }),
            "error": _nullable(ERROR_BRIEF),
            "webhook": _nullable(_obj({
                "callback_url": {"type": "string", "format": "uri"},
                "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}},
            })),
            "links": _obj({"self": {"type": "string"}, "items": {"type": "string"},
                           "results_zip": {"type": "string"}}),
        }),
        "Item": _obj({
            "index": COUNT,
            "path": {"type": "string", "description": "The entry's path inside the archive (or the file name)."},
            "output_path": {"type": "string", "description": "The result's path in results.zip (ends in .jpg)."},
            "status": {"type": "string", "enum": list(ItemStatus)},
            "size": _nullable(COUNT),
            "result_url": _nullable({"type": "string"}),
            "error": _nullable(ERROR_BRIEF),
        }),
        "ItemPage": _obj({
            "items": {"type": "array", "items": _ref("Item")},
            "total": COUNT,
            "expanded": {"type": "boolean"},
            "next": _nullable({"type": "string"}),
        }),
        # Optional JSON fields may be null, which means the same as leaving them out.
        "JobFromUpload": _obj({
            "upload_id": {"type": "string", "minLength": 1, "description": "From POST /v1/uploads."},
            "filename": _nullable({"type": "string", "description": "Overrides the upload's file name."}),
            "model": _nullable({"type": "string",
                                "description": "An installed model (GET /v1/models); default: the server's."}),
            "temperature": _nullable({"type": "number", "minimum": MIN_TEMPERATURE, "maximum": MAX_TEMPERATURE}),
            "callback_url": _nullable(CALLBACK_URL),
            "events": {"oneOf": [
                # null matches this branch only (OpenAPI 3.0 has no null type of its own).
                _nullable({"type": "array", "items": {"type": "string", "enum": list(EVENTS)}, "minItems": 1}),
                {"type": "string", "description": "Comma-separated event names.", "example": "started,completed"},
            ], "description": "Events to send: " + ", ".join(EVENTS) + "; default: all. Only with a callback_url."},
        }, required=["upload_id"], extra=True),
        "JobFromForm": _obj({
            "file": {"type": "string", "format": "binary",
                     "description": f"An image or a zip/tar/tar.gz archive, at most {limits.max_request_bytes} "
                                    "bytes; use POST /v1/uploads for larger files."},
            "model": {"type": "string"},
            "temperature": {"type": "number", "minimum": MIN_TEMPERATURE, "maximum": MAX_TEMPERATURE},
            "callback_url": CALLBACK_URL,
            "events": {"type": "string", "description": "Comma-separated event names: "
                       + ", ".join(EVENTS) + "; default: all. Only with a callback_url.",
                       "example": "started,completed"},
        }, required=["file"], extra=True, description="A field sent empty counts as left out, as browsers send "
                                                       "the fields of a form whether filled or not."),
        "UploadRequest": _obj({
            "size": {"type": "integer", "minimum": 1, "maximum": limits.max_upload_bytes,
                     "description": "Bytes the client will upload."},
            "filename": _nullable({"type": "string"}),
        }, required=["size"], extra=True),
        "SingleUpload": _obj({
            "upload_id": {"type": "string"},
            "expires_at": TIME,
            "method": {"type": "string", "enum": ["PUT"]},
            "url": {"type": "string", "description": "Presigned URL: PUT the whole file to it."},
        }),
        "MultipartUpload": _obj({
            "upload_id": {"type": "string"},
            "expires_at": TIME,
            "multipart": _obj({
                "part_size": {"type": "integer", "minimum": 1},
                "parts": {"type": "array", "items": _obj({
                    "part_number": {"type": "integer", "minimum": 1},
                    "url": {"type": "string", "description": "Presigned URL: PUT this part to it."},
                })},
            }),
            "complete_url": {"type": "string"},
        }),
        "UploadCompletion": _obj({
            "parts": {"type": "array", "minItems": 1, "items": _obj({
                "part_number": {"type": "integer", "minimum": 1},
                "etag": {"type": "string", "description": "The ETag header answered to the part's PUT."},
            }), "description": "Required for multipart uploads; ignored for single ones."},
        }, required=[], extra=True),
        "UploadComplete": _obj({
            "upload_id": {"type": "string"},
            "state": {"type": "string", "enum": ["complete"]},
            "size": COUNT,
        }),
        "Model": _obj({
            "name": {"type": "string"},
            "description": {"type": "string"},
            "licence": {"type": "string"},
            "training_data": {"type": "string"},
            "temperature": {"type": "number"},
            "input_size": {"type": "integer", "minimum": 1},
            "default": {"type": "boolean"},
        }, required=["name", "temperature", "input_size", "default"]),
        "ModelList": _obj({
            "models": {"type": "array", "items": _ref("Model")},
            "default": _nullable({"type": "string"}),
            "temperature_range": _obj({"min": {"type": "number"}, "max": {"type": "number"}}),
        }),
        "WebhookDelivery": _obj({
            "message_id": {"type": "string", "description": "The webhook-id header of the message."},
            "event": {"type": "string", "enum": list(EVENTS)},
            "attempt": {"type": "integer", "minimum": 1},
            "outcome": {"type": "string", "enum": list(DeliveryOutcome)},
            "status_code": _nullable({"type": "integer"}),
            "error": _nullable({"type": "string"}),
            "started_at": TIME,
            "duration_ms": COUNT,
            "next_attempt_at": _nullable(TIME),
        }),
        "WebhookDeliveries": _obj({
            "callback_url": _nullable({"type": "string"}),
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}},
            "deliveries": {"type": "array", "items": _ref("WebhookDelivery"),
                           "description": "Every delivery attempt, oldest first."},
        }),
        "WebhookSecret": _obj({
            "secret": {"type": "string", "pattern": f"^{SECRET_PREFIX}[A-Za-z0-9+/=]+$"},
            "scheme": {"type": "string"},
        }),
        "WebhookEvent": _obj({
            "type": {"type": "string", "enum": list(EVENT_TYPES.values())},
            "timestamp": TIME,
            "data": _ref("Job"),
        }, description="The body of a webhook delivery."),
        "Health": _obj({"status": {"type": "string", "enum": ["ok"]}}),
        "Ready": _obj({
            "status": {"type": "string", "enum": ["ready"]},
            "checks": _obj({"redis": {"type": "string"}, "workers": COUNT, "storage": {"type": "string"}}),
        }),
    }


def _job_id() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _webhook_callbacks() -> dict[str, Any]:
    header = lambda name, description: {  # noqa: E731
        "name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}
    return {
        "jobEvent": {
            "{$request.body#/callback_url}": {
                "post": {
                    "summary": "A job event, signed per Standard Webhooks",
                    "description": "Sent for each event the job asked for: started once, progress at most once "
                                   "per interval and step, completed exactly once. Retried with exponential "
                                   "backoff until a 2xx answer; redirects are not followed.",
                    "parameters": [
                        header("webhook-id", "The message id; the same on every attempt."),
                        header("webhook-timestamp", "Unix seconds of this attempt."),
                        header("webhook-signature",
                               "v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}'> with the "
                               "tenant's secret (GET /v1/webhook-secret)."),
                    ],
                    "requestBody": {"required": True, "content": {JSON: {"schema": _ref("WebhookEvent")}}},
                    "responses": {"2XX": {"description": "Received; any other answer is retried."}},
                }
            }
        }
    }


def _paths(settings: Settings) -> dict[str, Any]:
    err = _error_response
    job_ok = _json_response("The job.", _ref("Job"))
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["health"], "summary": "Liveness: the process answers",
            "responses": {"200": _json_response("Alive.", _ref("Health"))},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["health"],
            "summary": "Readiness: Redis, storage and at least one worker are there",
            "responses": {"200": _json_response("Ready.", _ref("Ready")),
                          "503": err("Not ready; details.checks says what is missing.")},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["health"], "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text exposition format.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/v1/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["health"], "summary": "This description",
            "responses": {"200": _json_response("OpenAPI document.", {"type": "object"})},
        }},
        "/v1/jobs": {"post": {
            "operationId": "createJob", "tags": ["jobs"], "summary": "Submit an image or an archive",
            "description": "Send the file in a multipart form (up to the request size limit), or name an upload "
                           "made with POST /v1/uploads in JSON. Answers at once; the job runs in the background.",
            "parameters": [{
                "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
                # Printable ASCII, as api/idempotency.py checks, and not only spaces (HTTP drops those).
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                           "pattern": "^[ -~]*[!-~][ -~]*$"},
                "description": "Repeating a request with the same key (per tenant, for as long as the job is "
                               "kept) returns the same job instead of creating another; the same key with "
                               "different parameters is refused with 409.",
            }],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": _ref("JobFromForm"),
                                        "encoding": {"file": {"contentType": "application/octet-stream"}}},
                JSON: {"schema": _ref("JobFromUpload")},
            }},
            "responses": {
                "202": _json_response("Accepted (also for a repeated Idempotency-Key).", _ref("Job"), headers={
                    "Location": {"schema": {"type": "string"}, "description": "The job's URL."},
                    REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]},
                                      "description": "Present when an earlier request with this Idempotency-Key "
                                                     "created the job."},
                }),
                "400": err("Invalid parameters (including a callback URL to a non-public address)."),
                "404": err("No such upload."),
                "409": err("The upload is incomplete or used, or the Idempotency-Key was used differently."),
                "413": err("The file is larger than the limit."),
                "415": err("Neither multipart/form-data nor JSON."),
                "422": err("The model is not installed."),
            },
            "callbacks": _webhook_callbacks(),
        }},
        "/v1/jobs/{job_id}": {"get": {
            "operationId": "getJob", "tags": ["jobs"], "summary": "A job's status, counts and progress",
            "parameters": [_job_id()],
            "responses": {"200": job_ok, "404": err("No such job.")},
        }},
        "/v1/jobs/{job_id}/items": {"get": {
            "operationId": "listItems", "tags": ["jobs"], "summary": "A page of a job's items, in index order",
            "parameters": [
                _job_id(),
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "default": 0}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}},
            ],
            "responses": {"200": _json_response("The items.", _ref("ItemPage")),
                          "400": err("offset or limit out of range."), "404": err("No such job.")},
        }},
        "/v1/jobs/{job_id}/cancel": {"post": {
            "operationId": "cancelJob", "tags": ["jobs"],
            "summary": "Cancel a job: pending items are dropped, finished results stay",
            "parameters": [_job_id()],
            "responses": {"200": job_ok, "404": err("No such job."), "409": err("The job has already ended.")},
        }},
        "/v1/jobs/{job_id}/items/{index}/result": {"get": {
            "operationId": "getItemResult", "tags": ["results"], "summary": "One result JPEG",
            "parameters": [_job_id(), {"name": "index", "in": "path", "required": True,
                                       "schema": {"type": "integer", "minimum": 0}}],
            "responses": {
                "302": {"description": "Redirect to a presigned URL of the JPEG.",
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "404": err("No such job or item, or the item has no result."),
            },
        }},
        "/v1/jobs/{job_id}/results.zip": {"get": {
            "operationId": "getResultsZip", "tags": ["results"],
            "summary": "Every result so far as one zip (streamed), in the archive's folder layout",
            "parameters": [_job_id()],
            "responses": {
                "200": {"description": "The zip.", "content": {"application/zip": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "404": err("No such job."),
            },
        }},
        "/v1/jobs/{job_id}/webhooks": {"get": {
            "operationId": "listWebhookDeliveries", "tags": ["webhooks"],
            "summary": "Every webhook delivery attempt made for a job",
            "parameters": [_job_id()],
            "responses": {"200": _json_response("The attempts.", _ref("WebhookDeliveries")),
                          "404": err("No such job.")},
        }},
        "/v1/webhook-secret": {"get": {
            "operationId": "getWebhookSecret", "tags": ["webhooks"],
            "summary": "The tenant's webhook signing secret (made on first use)",
            "responses": {"200": _json_response("The secret.", _ref("WebhookSecret"))},
        }},
        "/v1/uploads": {"post": {
            "operationId": "createUpload", "tags": ["uploads"],
            "summary": "Presigned upload of a large source straight to object storage",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("UploadRequest")}}},
            "responses": {
                "201": _json_response("PUT the file (or each part) to the URLs given.",
                                      {"oneOf": [_ref("SingleUpload"), _ref("MultipartUpload")]}),
                "400": err("Invalid size or filename."),
                "413": err("Larger than the upload limit."),
            },
        }},
        "/v1/uploads/{upload_id}/complete": {"post": {
            "operationId": "completeUpload", "tags": ["uploads"],
            "summary": "Finish an upload (multipart: with the parts' ETags)",
            "parameters": [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("UploadCompletion")}}},
            "responses": {
                "200": _json_response("Complete.", _ref("UploadComplete")),
                "400": err("Invalid parts."), "404": err("No such upload."),
                "409": err("The upload has been used by a job."), "413": err("Larger than the upload limit."),
            },
        }},
        "/v1/models": {"get": {
            "operationId": "listModels", "tags": ["models"], "summary": "Installed models and the default",
            "responses": {"200": _json_response("The models.", _ref("ModelList"))},
        }},
    }


def _add_common_responses(paths: dict[str, Any]) -> None:
    """Answers any operation may give: authentication and rate limits, oversized requests, server failures."""
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    for path, operations in paths.items():
        for operation in operations.values():
            responses = operation["responses"]
            if path in PUBLIC_PATHS:
                operation["security"] = []
            else:
                responses.setdefault("401", {**_error_response("A valid API key is required."), "headers": {
                    "WWW-Authenticate": {"schema": {"type": "string"}}}})
                responses.setdefault("429", {**_error_response("Rate limit or quota reached."),
                                             "headers": retry_after})
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("The request body is larger than the limit."))
            # From the HTTP server in front of the app, in its own format.
            responses.setdefault("414", {"description": "The request line (path and query) is longer than the "
                                                        "HTTP server accepts: 4094 bytes under gunicorn."})
            responses.setdefault("500", _error_response("Unexpected server error."))
            if path not in PUBLIC_PATHS:
                responses.setdefault("503", _error_response("Redis or storage is unavailable."))


def build_spec(settings: Settings) -> dict[str, Any]:
    paths = _paths(settings)
    _add_common_responses(paths)
    spec: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Colorize API",
            "version": API_VERSION,
            "description": "Colorizes black-and-white photos (Zhang, Isola & Efros, ECCV 2016). Submit an image or "
                           "an archive, poll the job (or receive webhooks), download JPEGs one by one or as a zip. "
                           "Errors are JSON: {\"error\": {\"code\", \"message\", \"details\"}}. Requests carry an API "
                           "key (Authorization: Bearer or X-API-Key) unless the server runs in open mode.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [{"name": n} for n in ("jobs", "results", "uploads", "webhooks", "models", "health")],
    }
    if settings.public_url:
        spec["servers"] = [{"url": settings.public_url.rstrip("/")}]
    return spec
