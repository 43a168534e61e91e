"""The paths of presigned uploads in the OpenAPI description."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import JSON, error_response, json_response, path_parameter, ref


def upload_paths() -> dict[str, Any]:
    err = error_response
    return {
        "/v1/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": ["uploads"],
                "summary": "Presigned upload of a large source straight to object storage",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("UploadRequest")}}},
                "responses": {
                    "201": json_response(
                        "PUT the file (or each part) to the URLs given.",
                        {"oneOf": [ref("SingleUpload"), ref("MultipartUpload")]},
                    ),
                    "400": err("Invalid size or filename."),
                    "413": err("Larger than the upload limit."),
                },
            }
        },
        "/v1/uploads/{upload_id}/complete": {
            "post": {
                "operationId": "completeUpload",
                "tags": ["uploads"],
                "summary": "Finish an upload (multipart: with the parts' ETags)",
                "parameters": [path_parameter("upload_id")],
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("UploadCompletion")}}},
                "responses": {
                    "200": json_response("Complete.", ref("UploadComplete")),
                    "400": err("Invalid parts."),
                    "404": err("No such upload or connection."),
                    "409": err("The upload has been used by a job."),
                    "413": err("Larger than the upload limit, or than the size the upload declared (deleted)."),
                },
            }
        },
    }
