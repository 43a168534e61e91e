"""The API's OpenAPI description, public at ``/v1/openapi.json``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from api.openapi.document import build_spec
from api.services import services

bp = Blueprint("openapi", __name__)

SPEC_KEY = "colorize.openapi"


@bp.get("/v1/openapi.json")
def openapi_document() -> Response:
    spec = current_app.extensions.get(SPEC_KEY)
    if spec is None:
        spec = current_app.extensions[SPEC_KEY] = build_spec(services().settings)
    return jsonify(spec)
