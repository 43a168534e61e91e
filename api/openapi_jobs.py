"""The OpenAPI description of listing and deleting jobs, and of ``Prefer: wait`` on job creation.

Declared from the same models and constants the routes use (``api/schemas.py``,
``api/preferences.py``); ``api/openapi_paths.py`` puts them in the document.
"""

from __future__ import annotations

from typing import Any

from api import schemas as s
from api.openapi_schemas import model_schema
from api.preferences import APPLIED_HEADER, MAX_WAIT_S
from api.preferences import HEADER as PREFER_HEADER

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def prefer_wait_parameter() -> dict[str, Any]:
    return {
        "name": PREFER_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "example": "wait=10"},
        "description": f"RFC 7240. wait=N (1 to {MAX_WAIT_S} seconds): answer once the job has ended if it "
        f"does within N seconds (201 with the finished job), else 202 as without it. Other preferences are "
        f"ignored; an invalid wait is refused (400) before anything is created.",
    }


def finished_job_response(headers: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``Prefer: wait`` when the job ended in time."""
    return {
        "description": "The job ended within the wait (Prefer: wait=N); a single image's result is at links.result.",
        "content": {JSON: {"schema": _ref("Job")}},
        "headers": {**headers, APPLIED_HEADER: applied_header()},
    }


def applied_header() -> dict[str, Any]:
    return {
        "schema": {"type": "string", "example": "wait=10"},
        "description": "wait=N when the request asked to wait (on 202: it waited N seconds in vain).",
    }


def list_jobs_operation() -> dict[str, Any]:
    properties = model_schema(s.JobListQuery)["properties"]
    return {
        "operationId": "listJobs",
        "tags": ["jobs"],
        "summary": "The tenant's jobs, newest first, a page at a time",
        "description": "Jobs are listed until they expire or are deleted. Page with next_cursor, passing the "
        "same filters again.",
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in properties.items()
        ],
        "responses": {
            "200": {"description": "A page of jobs.", "content": {JSON: {"schema": _ref("JobList")}}},
            "400": _error("A parameter is invalid (details.field names it), or the cursor is not one given out."),
        },
    }


def delete_job_operation(job_id: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "deleteJob",
        "tags": ["jobs"],
        "summary": "Delete a job: cancel it if it runs, delete its source, inputs and results",
        "description": "Deletes what the service stored for the job (its source, inputs and results). "
        "Afterwards every read of the job answers 404, and so does another DELETE; it is gone from the "
        "listing at once. Storage a task still in hand writes meanwhile is deleted by the purge shortly "
        "after. Objects in the tenant's own buckets are never deleted: neither a source by reference "
        "nor the results and manifest.json written to a destination.",
        "parameters": [job_id],
        "responses": {"204": {"description": "Deleted."}, "404": _error("No such job (or deleted already).")},
    }
