"""The OpenAPI 3.0 description of the HTTP API, served at ``/v1/openapi.json``.

The schemas are generated from the pydantic models that the routes read and answer with
(``api/schemas.py``, ``api/connection_schemas.py``, ``shared/jobs/documents.py``, ``api/error_responses.py``);
the paths are declared in ``api/openapi_paths.py``. Checked against the app's URL map by ``tests/test_openapi.py``: a
route missing there, or described there but not served, fails the test suite.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api import connection_schemas as c
from api import schemas as s
from api.error_responses import ErrorBody
from api.openapi_paths import paths
from api.openapi_schemas import component_schemas
from shared.jobs.documents import JobDocument, WebhookEvent
from shared.settings import Settings

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"

REQUEST: JsonSchemaMode = "validation"
RESPONSE: JsonSchemaMode = "serialization"
# Each component's model, and whether it is read from requests or written in responses.
COMPONENTS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {
    "Error": (ErrorBody, RESPONSE),
    "Job": (JobDocument, RESPONSE),
    "Item": (s.Item, RESPONSE),
    "ItemPage": (s.ItemPage, RESPONSE),
    "JobList": (s.JobList, RESPONSE),
    "JobFromUpload": (s.JobFromUpload, REQUEST),
    "JobFromSource": (s.JobFromSource, REQUEST),
    "JobFromForm": (s.JobFromForm, REQUEST),
    "UploadRequest": (s.UploadRequest, REQUEST),
    "SingleUpload": (s.SingleUpload, RESPONSE),
    "MultipartUpload": (s.MultipartUpload, RESPONSE),
    "UploadCompletion": (s.UploadCompletion, REQUEST),
    "UploadComplete": (s.UploadComplete, RESPONSE),
    "Model": (s.InstalledModel, RESPONSE),
    "ModelList": (s.ModelList, RESPONSE),
    "WebhookDelivery": (s.WebhookDelivery, RESPONSE),
    "WebhookDeliveries": (s.WebhookDeliveries, RESPONSE),
    "WebhookSecret": (s.WebhookSecret, RESPONSE),
    "WebhookEvent": (WebhookEvent, RESPONSE),
    "ConnectionRequest": (c.ConnectionRequest, REQUEST),
    "Connection": (c.ConnectionInfo, RESPONSE),
    "ConnectionList": (c.ConnectionList, RESPONSE),
    "Health": (s.Health, RESPONSE),
    "Ready": (s.Ready, RESPONSE),
}


def _schemas(settings: Settings) -> dict[str, Any]:
    schemas = component_schemas(COMPONENTS)
    # The server's limits, which the models do not know.
    limits = settings.limits
    schemas["JobFromForm"]["properties"]["file"]["description"] = (
        f"An image or a zip/tar/tar.gz archive, at most {limits.max_request_bytes} bytes; "
        "use POST /v1/uploads for larger files."
    )
    schemas["UploadRequest"]["properties"]["size"]["maximum"] = limits.max_upload_bytes
    for form in schemas["JobFromSource"]["properties"]["source"]["oneOf"]:
        for listed in ("keys", "urls"):
            if listed in form["properties"]:
                form["properties"][listed]["maxItems"] = limits.max_entries
    for body in ("JobFromForm", "JobFromUpload", "JobFromSource"):
        schemas[body]["properties"]["max_side"]["maximum"] = limits.max_side
    return schemas


def build_spec(settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Colorize API",
            "version": API_VERSION,
            "description": "Colorizes black-and-white photos (Zhang, Isola & Efros, ECCV 2016). Submit an image or "
            "an archive, poll the job (or receive webhooks), download JPEGs one by one or as a zip. "
            'Errors are JSON: {"error": {"code", "message", "details"}}. Requests carry an API '
            "key (Authorization: Bearer or X-API-Key) unless the server runs in open mode.",
        },
        "paths": paths(settings),
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [{"name": n} for n in ("jobs", "results", "uploads", "connections", "webhooks", "models", "health")],
    }
    if settings.public_url:
        spec["servers"] = [{"url": settings.public_url.rstrip("/")}]
    return spec
