"""The answers any operation of the OpenAPI description may give: authentication and rate limits,
oversized requests and request lines, server failures."""

from __future__ import annotations

from typing import Any

from api import serving
from api.openapi.fragments import error_response
from api.tenancy import PUBLIC_PATHS


def add_common_responses(paths: dict[str, Any]) -> None:
    """Add to each operation of ``paths`` the answers it does not describe itself."""
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    for path, operations in paths.items():
        for operation in operations.values():
            responses = operation["responses"]
            if path in PUBLIC_PATHS:
                operation["security"] = []
            else:
                responses.setdefault(
                    "401",
                    {
                        **error_response("A valid API key is required."),
                        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    },
                )
                responses.setdefault("429", {**error_response("Rate limit or quota reached."), "headers": retry_after})
            if "requestBody" in operation:
                responses.setdefault("413", error_response("The request body is larger than the limit."))
            # From the HTTP server in front of the app (api/serving.py), in the same error format.
            responses.setdefault(
                "414",
                error_response(
                    f"The request line (method, path, query and version) is longer than the HTTP server accepts: "
                    f"{serving.limit_request_line} bytes."
                ),
            )
            responses.setdefault("500", error_response("Unexpected server error."))
            if path not in PUBLIC_PATHS:
                responses.setdefault("503", error_response("Redis or storage is unavailable."))
