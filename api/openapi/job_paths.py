"""The paths of jobs in the OpenAPI description: submitting (with ``Idempotency-Key`` and
``Prefer: wait``), listing, inspecting, canceling and deleting.

Declared from the same models and constants the routes use (``api/schemas.py``,
``api/idempotency.py``, ``api/preferences.py``).
"""

from __future__ import annotations

from typing import Any

from api import schemas as s
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER
from api.openapi.fragments import JSON, error_response, job_id_parameter, json_response, query_parameters, ref
from api.openapi.webhook_callbacks import webhook_callbacks
from api.preferences import APPLIED_HEADER, MAX_WAIT_S
from api.preferences import HEADER as PREFER_HEADER


def job_paths() -> dict[str, Any]:
    err = error_response
    job_ok = json_response("The job.", ref("Job"))
    return {
        "/v1/jobs": {"get": _list_jobs_operation(), "post": _create_job_operation()},
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "tags": ["jobs"],
                "summary": "A job's status, counts and progress",
                "parameters": [job_id_parameter()],
                "responses": {"200": job_ok, "404": err("No such job.")},
            },
            "delete": _delete_job_operation(),
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "tags": ["jobs"],
                "summary": "Cancel a job: pending items are dropped, finished results stay",
                "parameters": [job_id_parameter()],
                "responses": {"200": job_ok, "404": err("No such job."), "409": err("The job has already ended.")},
            }
        },
    }


def _create_job_operation() -> dict[str, Any]:
    err = error_response
    created_headers = {
        "Location": {"schema": {"type": "string"}, "description": "The job's URL."},
        REPLAYED_HEADER: {
            "schema": {"type": "string", "enum": ["true"]},
            "description": "Present when an earlier request with this Idempotency-Key created the job.",
        },
    }
    return {
        "operationId": "createJob",
        "tags": ["jobs"],
        "summary": "Submit an image or an archive",
        "description": "Send the file in a multipart form (up to the request size limit), or name an upload "
        "made with POST /v1/uploads in JSON, or a source by reference (objects of a stored connection, or "
        "URLs), with an optional destination. Answers at once; the job runs in the background.",
        "parameters": [_idempotency_key_parameter(), _prefer_wait_parameter()],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": ref("JobFromForm"),
                    "encoding": {
                        "file": {"contentType": "application/octet-stream"},
                        "hints": {"contentType": "application/json"},
                    },
                },
                JSON: {"schema": {"oneOf": [ref("JobFromUpload"), ref("JobFromSource")]}},
            },
        },
        "responses": {
            "201": _finished_job_response(created_headers),
            "202": json_response(
                "Accepted (also for a repeated Idempotency-Key).",
                ref("Job"),
                headers={**created_headers, APPLIED_HEADER: _applied_header()},
            ),
            "400": err(
                "Invalid parameters (including a callback URL to a non-public address, or an invalid Prefer: wait)."
            ),
            "404": err("No such upload or connection."),
            "409": err("The upload is incomplete or used, or the Idempotency-Key was used differently."),
            "413": err("The file is larger than the limit, or the upload holds more than it declared."),
            "415": err("Neither multipart/form-data nor JSON."),
            "422": err("The model is not installed."),
            "501": err("A connection is named, but the server has no COLORIZE_CONNECTION_KEY."),
        },
        "callbacks": webhook_callbacks(),
    }


def _idempotency_key_parameter() -> dict[str, Any]:
    return {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": False,
        # Printable ASCII, as api/idempotency.py checks, and not only spaces (HTTP drops those).
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]*[!-~][ -~]*$"},
        "description": "Repeating a request with the same key (per tenant, for as long as the job is kept) returns "
        "the same job instead of creating another; the same key with different parameters is refused with 409.",
    }


def _prefer_wait_parameter() -> dict[str, Any]:
    return {
        "name": PREFER_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "example": "wait=10"},
        "description": f"RFC 7240. wait=N (1 to {MAX_WAIT_S} seconds): answer once the job has ended if it "
        f"does within N seconds (201 with the finished job), else 202 as without it. Other preferences are "
        f"ignored; an invalid wait is refused (400) before anything is created.",
    }


def _finished_job_response(headers: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``Prefer: wait`` when the job ended in time."""
    return json_response(
        "The job ended within the wait (Prefer: wait=N); a single image's result is at links.result.",
        ref("Job"),
        headers={**headers, APPLIED_HEADER: _applied_header()},
    )


def _applied_header() -> dict[str, Any]:
    return {
        "schema": {"type": "string", "example": "wait=10"},
        "description": "wait=N when the request asked to wait (on 202: it waited N seconds in vain).",
    }


def _list_jobs_operation() -> dict[str, Any]:
    return {
        "operationId": "listJobs",
        "tags": ["jobs"],
        "summary": "The tenant's jobs, newest first, a page at a time",
        "description": "Jobs are listed until they expire or are deleted. Page with next_cursor, passing the "
        "same filters again.",
        "parameters": query_parameters(s.JobListQuery),
        "responses": {
            "200": json_response("A page of jobs.", ref("JobList")),
            "400": error_response(
                "A parameter is invalid (details.field names it), or the cursor is not one given out."
            ),
        },
    }


def _delete_job_operation() -> dict[str, Any]:
    return {
        "operationId": "deleteJob",
        "tags": ["jobs"],
        "summary": "Delete a job: cancel it if it runs, delete its source, inputs and results",
        "description": "Deletes what the service stored for the job (its source, inputs and results). "
        "Afterwards every read of the job answers 404, and so does another DELETE; it is gone from the "
        "listing at once. Storage a task still in hand writes meanwhile is deleted by the purge shortly "
        "after. Objects in the tenant's own buckets are never deleted: neither a source by reference "
        "nor the results and manifest.json written to a destination.",
        "parameters": [job_id_parameter()],
        "responses": {"204": {"description": "Deleted."}, "404": error_response("No such job (or deleted already).")},
    }
