"""The pieces every part of the OpenAPI description is built from: references to component
schemas, JSON and error answers, path and query parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.openapi.schema_dialect import model_schema

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def error_response(description: str) -> dict[str, Any]:
    """An answer in the API's error format (``{"error": {"code", "message", "details"}}``)."""
    return json_response(description, ref("Error"))


def path_parameter(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A segment of the path; a string unless ``schema`` says otherwise."""
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def job_id_parameter() -> dict[str, Any]:
    return path_parameter("job_id")


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field of ``model``, required where the field has no default."""
    schema = model_schema(model)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]
