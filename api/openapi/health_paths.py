"""The service's own paths in the OpenAPI description: liveness, readiness, metrics and the
description itself."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import error_response, json_response, ref


def health_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["health"],
                "summary": "Liveness: the process answers",
                "responses": {"200": json_response("Alive.", ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["health"],
                "summary": "Readiness: Redis, storage and at least one worker are there",
                "responses": {
                    "200": json_response("Ready.", ref("Ready")),
                    "503": error_response("Not ready; details.checks says what is missing."),
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
                "responses": {"200": json_response("OpenAPI document.", {"type": "object"})},
            }
        },
    }
