"""The OpenAPI 3.0 document of the HTTP API, served at ``/v1/openapi.json``: the paths of every
resource, the answers any operation may give, and the component schemas.

Checked against the app's URL map by ``tests/test_openapi.py``: a route missing here, or
described here but not served, fails the test suite.
"""

from __future__ import annotations

from typing import Any

from api.openapi.common_responses import add_common_responses
from api.openapi.components import schemas
from api.openapi.connection_paths import connection_paths
from api.openapi.delivery_paths import delivery_paths
from api.openapi.health_paths import health_paths
from api.openapi.item_paths import item_paths
from api.openapi.job_paths import job_paths
from api.openapi.model_paths import model_paths
from api.openapi.upload_paths import upload_paths
from shared.settings import Settings

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"


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
        "paths": paths(),
        "components": {
            "schemas": schemas(settings),
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


def paths() -> dict[str, Any]:
    """Every path with its operations, the answers that any operation may give included."""
    described = {
        **health_paths(),
        **job_paths(),
        **item_paths(),
        **delivery_paths(),
        **upload_paths(),
        **connection_paths(),
        **model_paths(),
    }
    add_common_responses(described)
    return described
