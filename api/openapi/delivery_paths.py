"""The paths of webhook deliveries in the OpenAPI description: a job's delivery attempts and the
tenant's signing secret (what is delivered: ``webhook_callbacks``)."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import error_response, job_id_parameter, json_response, ref


def delivery_paths() -> dict[str, Any]:
    return {
        "/v1/jobs/{job_id}/webhooks": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": ["webhooks"],
                "summary": "Every webhook delivery attempt made for a job",
                "parameters": [job_id_parameter()],
                "responses": {
                    "200": json_response("The attempts.", ref("WebhookDeliveries")),
                    "404": error_response("No such job."),
                },
            }
        },
        "/v1/webhook-secret": {
            "get": {
                "operationId": "getWebhookSecret",
                "tags": ["webhooks"],
                "summary": "The tenant's webhook signing secret (made on first use)",
                "responses": {"200": json_response("The secret.", ref("WebhookSecret"))},
            }
        },
    }
