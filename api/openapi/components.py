"""The component schemas of the OpenAPI description, generated from the pydantic models that the
routes read and answer with (``api/schemas.py``, ``api/connection_schemas.py``,
``api/likely_colour_schemas.py``, ``shared/jobs/documents.py``, ``api/error_responses.py``), with the server's limits written in."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api import connection_schemas as c
from api import likely_colour_schemas as lc
from api import schemas as s
from api import upload_schemas as u
from api.error_responses import ErrorBody
from api.openapi.schema_dialect import component_schemas
from shared.jobs.documents import JobDocument, WebhookEvent
from shared.settings import Settings

REQUEST: JsonSchemaMode = "validation"
RESPONSE: JsonSchemaMode = "serialization"
# Each component's model, and whether it is read from requests or written in responses.
COMPONENTS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {
    "Error": (ErrorBody, RESPONSE),
    "Job": (JobDocument, RESPONSE),
    "Item": (s.Item, RESPONSE),
    "ItemPage": (s.ItemPage, RESPONSE),
    "LikelyColours": (lc.LikelyColours, RESPONSE),
    "JobList": (s.JobList, RESPONSE),
    "JobFromUpload": (s.JobFromUpload, REQUEST),
    "JobFromSource": (s.JobFromSource, REQUEST),
    "JobFromForm": (s.JobFromForm, REQUEST),
    "UploadRequest": (u.UploadRequest, REQUEST),
    "SingleUpload": (u.SingleUpload, RESPONSE),
    "MultipartUpload": (u.MultipartUpload, RESPONSE),
    "UploadCompletion": (u.UploadCompletion, REQUEST),
    "UploadComplete": (u.UploadComplete, RESPONSE),
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


def schemas(settings: Settings) -> dict[str, Any]:
    """Every component's schema, with the limits of ``settings`` that the models do not know."""
    described = component_schemas(COMPONENTS)
    limits = settings.limits
    described["JobFromForm"]["properties"]["file"]["description"] = (
        f"An image or a zip/tar/tar.gz archive, at most {limits.max_request_bytes} bytes; "
        "use POST /v1/uploads for larger files."
    )
    described["UploadRequest"]["properties"]["size"]["maximum"] = limits.max_upload_bytes
    for form in described["JobFromSource"]["properties"]["source"]["oneOf"]:
        for listed in ("keys", "urls"):
            if listed in form["properties"]:
                form["properties"][listed]["maxItems"] = limits.max_entries
    for body in ("JobFromForm", "JobFromUpload", "JobFromSource"):
        described[body]["properties"]["max_side"]["maximum"] = limits.max_side
    # The form's field is JSON text (encoded application/json, as the request body says):
    # described as the hints it holds, as a JSON job's, but never null (a form has no null).
    listed = described["JobFromUpload"]["properties"]["hints"]
    described["JobFromForm"]["properties"]["hints"] = {
        **listed,
        "oneOf": [{k: v for k, v in shape.items() if k != "nullable"} for shape in listed["oneOf"]],
    }
    return described
