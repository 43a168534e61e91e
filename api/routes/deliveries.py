"""A job's webhook deliveries, and the tenant's signing secret that receivers verify them with."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.services import services
from api.tenancy import current_tenant
from shared.webhook_events import DeliveryLog, WebhookSecrets

bp = Blueprint("webhooks", __name__)


@bp.get("/v1/jobs/<job_id>/webhooks")
def list_deliveries(job_id: str) -> Response:
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    return jsonify({
        "callback_url": job.callback_url,
        "events": list(job.webhook_events),
        "deliveries": DeliveryLog(svc.redis, svc.settings.redis_namespace).attempts(job.id),
    })


@bp.get("/v1/webhook-secret")
def webhook_secret() -> Response:
    # Made on first use; every delivery to this tenant's callbacks is signed with it.
    svc = services()
    return jsonify({"secret": WebhookSecrets(svc.redis, svc.settings.redis_namespace).get_or_create(current_tenant()),
                    "scheme": "standard-webhooks v1 (HMAC-SHA256)"})
