"""The OpenAPI description stays true: every served route is described (and nothing else), the
document is valid OpenAPI 3, and real responses match the schemas it gives for them."""

from __future__ import annotations

import io
import re
from typing import Literal

import numpy as np
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from api.app import create_app
from api.openapi.document import build_spec
from api.openapi.schema_dialect import component_schemas
from shared.settings import Settings
from tests.integration_fixtures import with_own_keys

# Flask answers these for every route by itself.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
# Static files and the web page (api/web.py) are not part of the API.
UNDESCRIBED_ENDPOINTS = {"static", "web.index"}


@pytest.fixture(scope="module")
def offline_app():
    # Nothing here talks to Redis or storage: the URL only has to parse.
    return create_app(Settings(redis_url="redis://127.0.0.1:9/0"))


def openapi_path(rule: str) -> str:
    """``/v1/jobs/<job_id>/items/<int:index>`` -> ``/v1/jobs/{job_id}/items/{index}``."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def served_operations(app) -> dict[str, set[str]]:
    operations: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDESCRIBED_ENDPOINTS:
            continue
        operations.setdefault(openapi_path(rule.rule), set()).update(m.lower() for m in rule.methods - IMPLICIT_METHODS)
    return operations


def test_every_route_is_described_with_its_methods(offline_app) -> None:
    spec = build_spec(Settings())
    described = {path: set(item) for path, item in spec["paths"].items()}
    assert served_operations(offline_app) == described


def test_path_parameters_match_the_routes(offline_app) -> None:
    spec = build_spec(Settings())
    for rule in offline_app.url_map.iter_rules():
        if rule.endpoint in UNDESCRIBED_ENDPOINTS:
            continue
        for method, operation in spec["paths"][openapi_path(rule.rule)].items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(rule.arguments), (rule.rule, method)
            for parameter in operation.get("parameters", []):
                if (
                    parameter["in"] == "path"
                    and rule._converters[parameter["name"]].__class__.__name__ == "IntegerConverter"
                ):
                    assert parameter["schema"]["type"] == "integer", (rule.rule, parameter["name"])


def test_the_document_is_valid_openapi() -> None:
    validate_spec(build_spec(Settings(public_url="https://colorize.example")))


def test_the_document_is_served_without_a_key() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:9/0", auth="keys"))
    client = app.test_client()
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.json == build_spec(app.extensions["colorize"].settings)
    assert client.get("/v1/models").status_code == 401  # while the API itself needs one


# --- responses against their schemas ------------------------------------------------------


@pytest.fixture(scope="module")
def live(app_settings):
    # Callbacks to loopback only: nothing outside this machine is ever named.
    app = create_app(with_own_keys(app_settings).with_overrides(webhook_allowed_networks="127.0.0.0/8"))
    return app.test_client(), build_spec(app_settings)


def conforms(spec: dict, path: str, method: str, response) -> None:
    """The response's status is described for the operation, and its JSON body matches the schema."""
    described = spec["paths"][path][method]["responses"]
    assert str(response.status_code) in described, (path, method, response.status_code)
    content = described[str(response.status_code)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": spec["components"]}
        OAS30Validator(schema, format_checker=oas30_format_checker).validate(response.json)
    else:
        assert not response.is_json


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((10, 14), 70, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.integration
def test_responses_match_their_schemas(live) -> None:
    client, spec = live
    created = client.post(
        "/v1/jobs",
        content_type="multipart/form-data",
        data={
            "file": (io.BytesIO(png()), "photo.png"),
            "callback_url": "http://127.0.0.1:9/hook",
            "events": "completed",
        },
    )
    conforms(spec, "/v1/jobs", "post", created)
    job_id = created.json["id"]
    for path, url in [
        ("/v1/jobs/{job_id}", f"/v1/jobs/{job_id}"),
        ("/v1/jobs/{job_id}/items", f"/v1/jobs/{job_id}/items?limit=5"),
        ("/v1/jobs/{job_id}/webhooks", f"/v1/jobs/{job_id}/webhooks"),
        ("/v1/jobs/{job_id}/items/{index}/result", f"/v1/jobs/{job_id}/items/0/result"),
        ("/v1/jobs/{job_id}/items", f"/v1/jobs/{job_id}/items?limit=0"),
        ("/v1/jobs/{job_id}", "/v1/jobs/missing"),
        ("/v1/models", "/v1/models"),
        ("/v1/webhook-secret", "/v1/webhook-secret"),
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
    ]:
        conforms(spec, path, "get", client.get(url))
    conforms(spec, "/v1/jobs/{job_id}/cancel", "post", client.post(f"/v1/jobs/{job_id}/cancel"))
    conforms(spec, "/v1/jobs/{job_id}/cancel", "post", client.post(f"/v1/jobs/{job_id}/cancel"))  # 409
    conforms(spec, "/v1/uploads", "post", client.post("/v1/uploads", json={"size": 10, "filename": "a.zip"}))
    conforms(spec, "/v1/uploads", "post", client.post("/v1/uploads", json={"size": 12 * 1024**2 - 1}))
    conforms(spec, "/v1/uploads", "post", client.post("/v1/uploads", json={"size": "big"}))
    conforms(spec, "/v1/uploads/{upload_id}/complete", "post", client.post("/v1/uploads/missing/complete", json={}))
    conforms(spec, "/v1/jobs", "post", client.post("/v1/jobs", data="x", content_type="text/plain"))
    conforms(spec, "/metrics", "get", client.get("/metrics"))
    conforms(spec, "/v1/jobs", "get", client.get("/v1/jobs?limit=2"))
    conforms(spec, "/v1/jobs", "get", client.get("/v1/jobs?status=bogus"))
    waited = client.post(
        "/v1/jobs",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(png()), "photo.png")},
        headers={"Prefer": "wait=1"},
    )
    conforms(spec, "/v1/jobs", "post", waited)  # 202: no worker here
    bad_wait = client.post(
        "/v1/jobs",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(png()), "photo.png")},
        headers={"Prefer": "wait=600"},
    )
    conforms(spec, "/v1/jobs", "post", bad_wait)
    conforms(spec, "/v1/jobs/{job_id}", "delete", client.delete(f"/v1/jobs/{job_id}"))
    conforms(spec, "/v1/jobs/{job_id}", "delete", client.delete(f"/v1/jobs/{job_id}"))  # 404


# --- schemas from models ------------------------------------------------------------------


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["a"] = Field(title="Kind")
    count: int = Field(3, ge=0)


class Outer(BaseModel):
    inner: Inner | None
    listed: list[Inner]
    label: str | None = Field(None, description="A label.")


class Holder(BaseModel):
    items: list[Inner]


def test_model_schemas_are_written_in_openapi_30() -> None:
    schemas = component_schemas({"Outer": (Outer, "validation")})
    inner = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["a"]},
            "count": {"type": "integer", "minimum": 0, "default": 3},
        },
        "required": ["kind"],
    }
    assert schemas == {
        "Outer": {
            "type": "object",
            "properties": {
                "inner": {**inner, "nullable": True},
                "listed": {"type": "array", "items": inner},
                "label": {"type": "string", "nullable": True, "description": "A label."},
            },
            "required": ["inner", "listed"],
        }
    }
    validate_spec(
        {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}, "components": {"schemas": schemas}}
    )


def test_components_refer_to_one_another_and_cannot_be_nullable() -> None:
    schemas = component_schemas({"Inner": (Inner, "validation"), "Holder": (Holder, "validation")})
    assert schemas["Holder"]["properties"]["items"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Inner"},
    }
    with pytest.raises(ValueError, match="nullable"):
        component_schemas({"Inner": (Inner, "validation"), "Outer": (Outer, "validation")})
