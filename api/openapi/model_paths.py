"""The paths of installed models in the OpenAPI description."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import json_response, ref


def model_paths() -> dict[str, Any]:
    return {
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "tags": ["models"],
                "summary": "Installed models and the default",
                "responses": {"200": json_response("The models.", ref("ModelList"))},
            }
        },
    }
