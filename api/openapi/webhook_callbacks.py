"""The webhook deliveries a job request asks for: the ``callbacks`` of job creation in the OpenAPI description."""

from __future__ import annotations

from typing import Any

from api.openapi.fragments import JSON, ref


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}


def webhook_callbacks() -> dict[str, Any]:
    return {
        "jobEvent": {
            "{$request.body#/callback_url}": {
                "post": {
                    "summary": "A job event, signed per Standard Webhooks",
                    "description": "Sent for each event the job asked for: started once, progress at most once "
                    "per interval and step, completed exactly once. Retried with exponential "
                    "backoff until a 2xx answer; redirects are not followed.",
                    "parameters": [
                        _header("webhook-id", "The message id; the same on every attempt."),
                        _header("webhook-timestamp", "Unix seconds of this attempt."),
                        _header(
                            "webhook-signature",
                            "v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}'> with the "
                            "tenant's secret (GET /v1/webhook-secret).",
                        ),
                    ],
                    "requestBody": {"required": True, "content": {JSON: {"schema": ref("WebhookEvent")}}},
                    "responses": {"2XX": {"description": "Received; any other answer is retried."}},
                }
            }
        }
    }
