"""The paths of stored connections in the OpenAPI description."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import JSON, error_response, json_response, path_parameter, ref


def connection_paths() -> dict[str, Any]:
    err = error_response
    not_configured = err("The server has no COLORIZE_CONNECTION_KEY: connections are off.")
    return {
        "/v1/connections": {
            "post": {
                "operationId": "createConnection",
                "tags": ["connections"],
                "summary": "Store an S3 connection (its credentials are kept encrypted, never answered back)",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("ConnectionRequest")}}},
                "responses": {
                    "201": json_response(
                        "Stored.",
                        ref("Connection"),
                        {"Location": {"schema": {"type": "string"}, "description": "The connection's URL."}},
                    ),
                    "400": err("Invalid fields (including an endpoint at a non-public address)."),
                    "409": err("The tenant has a connection of that name, or as many as it may keep."),
                    "501": not_configured,
                },
            },
            "get": {
                "operationId": "listConnections",
                "tags": ["connections"],
                "summary": "The tenant's connections, without their credentials",
                "responses": {"200": json_response("The connections.", ref("ConnectionList"))},
            },
        },
        "/v1/connections/{name}": {
            "delete": {
                "operationId": "deleteConnection",
                "tags": ["connections"],
                "summary": "Forget a connection (jobs still reading from it fail their remaining items)",
                "parameters": [path_parameter("name")],
                "responses": {"204": {"description": "Deleted."}, "404": err("No such connection.")},
            }
        },
    }
