"""A job's webhook deliveries, and the tenant's signing secret that receivers verify them with."""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import respond
from api.schemas import WebhookDeliveries, WebhookDelivery, WebhookSecret
from api.services import services
from api.tenancy import current_tenant
from shared.webhooks.events import DeliveryLog, WebhookSecrets

bp = Blueprint("webhooks", __name__)


@bp.get("/v1/jobs/<job_id>/webhooks")
def list_deliveries(job_id: str) -> Response:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    attempts = DeliveryLog(svc.redis, svc.settings.redis_namespace).attempts(job.id)
    return respond(
        WebhookDeliveries(
            callback_url=job.callback_url,
            events=list(job.webhook_events),
            deliveries=[WebhookDelivery(**attempt) for attempt in attempts],
        )
    )


@bp.get("/v1/webhook-secret")
def webhook_secret() -> Response:
    # Made on first use; every delivery to this tenant's callbacks is signed with it.
    svc = services()
    secrets = WebhookSecrets(svc.redis, svc.settings.redis_namespace)
    return respond(
        WebhookSecret(secret=secrets.get_or_create(current_tenant()), scheme="standard-webhooks v1 (HMAC-SHA256)")
    )
