"""The paths of a job's items and results in the OpenAPI description: the item pages, one result
by redirect, the likely colours at a point of one, every result as one zip."""

from __future__ import annotations

from typing import Any

from api import likely_colour_schemas as lc
from api import schemas as s
from api.openapi.fragments import error_response, job_id_parameter, json_response, path_parameter, query_parameters, ref


def item_paths() -> dict[str, Any]:
    err = error_response
    return {
        "/v1/jobs/{job_id}/items": {
            "get": {
                "operationId": "listItems",
                "tags": ["jobs"],
                "summary": "A page of a job's items, in index order",
                "parameters": [job_id_parameter(), *query_parameters(s.ItemPageQuery)],
                "responses": {
                    "200": json_response("The items.", ref("ItemPage")),
                    "400": err("offset or limit out of range."),
                    "404": err("No such job."),
                },
            }
        },
        "/v1/jobs/{job_id}/items/{index}/result": {
            "get": {
                "operationId": "getItemResult",
                "tags": ["results"],
                "summary": "One result image (JPEG, PNG or WebP, as the job asked)",
                "parameters": [job_id_parameter(), path_parameter("index", {"type": "integer", "minimum": 0})],
                "responses": {
                    "302": {
                        "description": "Redirect to a presigned URL of the image (image/jpeg, image/png or image/webp).",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": err("No such job or item, or the item has no result."),
                },
            }
        },
        "/v1/jobs/{job_id}/items/{index}/likely-colours": {
            "get": {
                "operationId": "getLikelyColours",
                "tags": ["results"],
                "summary": "The colours the model found most likely at a point of the photo, to offer as a hint",
                "description": "Kept for a single image colorized by a model that takes hints (GET /v1/models: "
                "hints true), as given the job's own hints: the five most probable, each at the photo's "
                "lightness there, with its probability.",
                "parameters": [
                    job_id_parameter(),
                    path_parameter("index", {"type": "integer", "minimum": 0}),
                    *query_parameters(lc.LikelyColoursQuery),
                ],
                "responses": {
                    "200": json_response("The colours.", ref("LikelyColours")),
                    "400": err("x or y missing or outside 0..1."),
                    "404": err("No such job or item, the item has no result, or its model keeps no likely colours."),
                },
            }
        },
        "/v1/jobs/{job_id}/results.zip": {
            "get": {
                "operationId": "getResultsZip",
                "tags": ["results"],
                "summary": "Every result as one zip (streamed), in the archive's folder layout, once the job has ended",
                "description": "Its last entry is manifest.json: the job's id, status and model, and for each item "
                "its input_path, output_path (null without a result), status, error_code and model.",
                "parameters": [job_id_parameter()],
                "responses": {
                    "200": {
                        "description": "The zip.",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": err("No such job."),
                    "409": err("The job has not finished yet (details.status); single results are served meanwhile."),
                },
            }
        },
    }
