"""The paths of the OpenAPI description: each operation's parameters, bodies and answers.

Declared from the same constants the routes use (statuses, limits, headers, public paths);
the schemas they refer to are the components that ``api/openapi.py`` generates from the models.
Listing and deleting jobs and ``Prefer: wait`` (``api/openapi_jobs.py``), and the webhook
deliveries a job request asks for (``api/openapi_callbacks.py``), are declared apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api import schemas as s
from api import serving
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER
from api.openapi_callbacks import webhook_callbacks
from api.openapi_connections import connection_paths
from api.openapi_jobs import (
    applied_header,
    delete_job_operation,
    finished_job_response,
    list_jobs_operation,
    prefer_wait_parameter,
)
from api.openapi_schemas import model_schema
from api.preferences import APPLIED_HEADER
from api.tenancy import PUBLIC_PATHS
from shared.settings import Settings

JSON = "application/json"


def paths(settings: Settings) -> dict[str, Any]:
    """Every path with its operations, the answers that any operation may give included."""
    described = _paths(settings)
    _add_common_responses(described)
    return described


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model_schema(model)["properties"]
    return [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in properties.items()]


def _job_id() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths(settings: Settings) -> dict[str, Any]:
    err = _error_response
    job_ok = _json_response("The job.", _ref("Job"))
    created_headers = {
        "Location": {"schema": {"type": "string"}, "description": "The job's URL."},
        REPLAYED_HEADER: {
            "schema": {"type": "string", "enum": ["true"]},
            "description": "Present when an earlier request with this Idempotency-Key created the job.",
        },
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["health"],
                "summary": "Liveness: the process answers",
                "responses": {"200": _json_response("Alive.", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["health"],
                "summary": "Readiness: Redis, storage and at least one worker are there",
                "responses": {
                    "200": _json_response("Ready.", _ref("Ready")),
                    "503": err("Not ready; details.checks says what is missing."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["health"],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["health"],
                "summary": "This description",
                "responses": {"200": _json_response("OpenAPI document.", {"type": "object"})},
            }
        },
        "/v1/jobs": {
            "get": list_jobs_operation(),
            "post": {
                "operationId": "createJob",
                "tags": ["jobs"],
                "summary": "Submit an image or an archive",
                "description": "Send the file in a multipart form (up to the request size limit), or name an upload "
                "made with POST /v1/uploads in JSON, or a source by reference (objects of a stored connection, or "
                "URLs), with an optional destination. Answers at once; the job runs in the background.",
                "parameters": [
                    {
                        "name": IDEMPOTENCY_HEADER,
                        "in": "header",
                        "required": False,
                        # Printable ASCII, as api/idempotency.py checks, and not only spaces (HTTP drops those).
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_KEY_LENGTH,
                            "pattern": "^[ -~]*[!-~][ -~]*$",
                        },
                        "description": "Repeating a request with the same key (per tenant, for as long as the job is "
                        "kept) returns the same job instead of creating another; the same key with "
                        "different parameters is refused with 409.",
                    },
                    prefer_wait_parameter(),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _ref("JobFromForm"),
                            "encoding": {"file": {"contentType": "application/octet-stream"}},
                        },
                        JSON: {"schema": {"oneOf": [_ref("JobFromUpload"), _ref("JobFromSource")]}},
                    },
                },
                "responses": {
                    "201": finished_job_response(created_headers),
                    "202": _json_response(
                        "Accepted (also for a repeated Idempotency-Key).",
                        _ref("Job"),
                        headers={**created_headers, APPLIED_HEADER: applied_header()},
                    ),
                    "400": err(
                        "Invalid parameters (including a callback URL to a non-public address, or an invalid "
                        "Prefer: wait)."
                    ),
                    "404": err("No such upload or connection."),
                    "409": err("The upload is incomplete or used, or the Idempotency-Key was used differently."),
                    "413": err("The file is larger than the limit, or the upload holds more than it declared."),
                    "415": err("Neither multipart/form-data nor JSON."),
                    "422": err("The model is not installed."),
                    "501": err("A connection is named, but the server has no COLORIZE_CONNECTION_KEY."),
                },
                "callbacks": webhook_callbacks(),
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "tags": ["jobs"],
                "summary": "A job's status, counts and progress",
                "parameters": [_job_id()],
                "responses": {"200": job_ok, "404": err("No such job.")},
            },
            "delete": delete_job_operation(_job_id()),
        },
        "/v1/jobs/{job_id}/items": {
            "get": {
                "operationId": "listItems",
                "tags": ["jobs"],
                "summary": "A page of a job's items, in index order",
                "parameters": [_job_id(), *_query_parameters(s.ItemPageQuery)],
                "responses": {
                    "200": _json_response("The items.", _ref("ItemPage")),
                    "400": err("offset or limit out of range."),
                    "404": err("No such job."),
                },
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "tags": ["jobs"],
                "summary": "Cancel a job: pending items are dropped, finished results stay",
                "parameters": [_job_id()],
                "responses": {"200": job_ok, "404": err("No such job."), "409": err("The job has already ended.")},
            }
        },
        "/v1/jobs/{job_id}/items/{index}/result": {
            "get": {
                "operationId": "getItemResult",
                "tags": ["results"],
                "summary": "One result image (JPEG, PNG or WebP, as the job asked)",
                "parameters": [
                    _job_id(),
                    {"name": "index", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "302": {
                        "description": "Redirect to a presigned URL of the image (image/jpeg, image/png or image/webp).",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": err("No such job or item, or the item has no result."),
                },
            }
        },
        "/v1/jobs/{job_id}/results.zip": {
            "get": {
                "operationId": "getResultsZip",
                "tags": ["results"],
                "summary": "Every result as one zip (streamed), in the archive's folder layout, once the job has ended",
                "description": "Its last entry is manifest.json: the job's id, status and model, and for each item "
                "its input_path, output_path (null without a result), status, error_code and model.",
                "parameters": [_job_id()],
                "responses": {
                    "200": {
                        "description": "The zip.",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": err("No such job."),
                    "409": err("The job has not finished yet (details.status); single results are served meanwhile."),
                },
            }
        },
        "/v1/jobs/{job_id}/webhooks": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": ["webhooks"],
                "summary": "Every webhook delivery attempt made for a job",
                "parameters": [_job_id()],
                "responses": {
                    "200": _json_response("The attempts.", _ref("WebhookDeliveries")),
                    "404": err("No such job."),
                },
            }
        },
        "/v1/webhook-secret": {
            "get": {
                "operationId": "getWebhookSecret",
                "tags": ["webhooks"],
                "summary": "The tenant's webhook signing secret (made on first use)",
                "responses": {"200": _json_response("The secret.", _ref("WebhookSecret"))},
            }
        },
        "/v1/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": ["uploads"],
                "summary": "Presigned upload of a large source straight to object storage",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("UploadRequest")}}},
                "responses": {
                    "201": _json_response(
                        "PUT the file (or each part) to the URLs given.",
                        {"oneOf": [_ref("SingleUpload"), _ref("MultipartUpload")]},
                    ),
                    "400": err("Invalid size or filename."),
                    "413": err("Larger than the upload limit."),
                },
            }
        },
        "/v1/uploads/{upload_id}/complete": {
            "post": {
                "operationId": "completeUpload",
                "tags": ["uploads"],
                "summary": "Finish an upload (multipart: with the parts' ETags)",
                "parameters": [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("UploadCompletion")}}},
                "responses": {
                    "200": _json_response("Complete.", _ref("UploadComplete")),
                    "400": err("Invalid parts."),
                    "404": err("No such upload or connection."),
                    "409": err("The upload has been used by a job."),
                    "413": err("Larger than the upload limit, or than the size the upload declared (deleted)."),
                },
            }
        },
        **connection_paths(_ref, _json_response, _error_response),
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "tags": ["models"],
                "summary": "Installed models and the default",
                "responses": {"200": _json_response("The models.", _ref("ModelList"))},
            }
        },
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
                responses.setdefault(
                    "401",
                    {
                        **_error_response("A valid API key is required."),
                        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    },
                )
                responses.setdefault("429", {**_error_response("Rate limit or quota reached."), "headers": retry_after})
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("The request body is larger than the limit."))
            # From the HTTP server in front of the app (api/serving.py), in the same error format.
            responses.setdefault(
                "414",
                _error_response(
                    f"The request line (method, path, query and version) is longer than the HTTP server accepts: "
                    f"{serving.limit_request_line} bytes."
                ),
            )
            responses.setdefault("500", _error_response("Unexpected server error."))
            if path not in PUBLIC_PATHS:
                responses.setdefault("503", _error_response("Redis or storage is unavailable."))
