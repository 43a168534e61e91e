"""The webhook delivery task: one attempt per run, on the ``webhooks`` queue, retried with backoff.

Each attempt is recorded on the job (``GET /v1/jobs/{id}/webhooks``). A failed attempt (no
answer within the timeout, a refused connection, a status outside 2xx, a host that does not
resolve) is retried after ``retry_delay_s`` until ``webhook_max_attempts``; a refused one (the
host now resolves to a forbidden address) is not.
"""

from __future__ import annotations

import time
from dataclasses import replace

from celery import shared_task
from celery.utils.log import get_task_logger

from shared.jobs import iso_time
from shared.settings import Settings
from shared.webhooks import DeliveryAttempt, DeliveryLog, WebhookMessage, WebhookSecrets, deliver, retry_delay_s
from worker.celery_app import WEBHOOK_TASK
from worker.tasks import worker_context

log = get_task_logger(__name__)


@shared_task(name=WEBHOOK_TASK, bind=True, max_retries=None)
def deliver_webhook(self, message: dict[str, str]) -> str:
    """Make one delivery attempt; returns its outcome (delivered | failed | refused)."""
    settings: Settings = self.app.colorize_settings
    ctx = worker_context(settings)
    webhook = WebhookMessage.from_dict(message)
    number = self.request.retries + 1
    secret = WebhookSecrets(ctx.redis).get_or_create(webhook.tenant)
    attempt = deliver(webhook, secret, number, settings)
    delay = retry_delay_s(number, settings) if attempt.retryable and number < settings.webhook_max_attempts else None
    if delay is not None:
        attempt = replace(attempt, next_attempt_at=iso_time(time.time() + delay))
    DeliveryLog(ctx.redis).record(webhook.job_id, attempt)
    _count(ctx.metrics, webhook, attempt)
    extra = {"job_id": webhook.job_id, "event": webhook.event, "attempt": number, "status_code": attempt.status_code}
    if attempt.outcome == "delivered":
        log.info("webhook %s delivered", webhook.id, extra=extra)
    elif delay is not None:
        log.warning("webhook %s failed (%s); retrying in %.1f s", webhook.id, attempt.error, delay, extra=extra)
        raise self.retry(countdown=delay)
    else:
        log.error("webhook %s %s after %d attempts: %s", webhook.id, attempt.outcome, number, attempt.error,
                  extra=extra)
    return attempt.outcome


def _count(metrics, webhook: WebhookMessage, attempt: DeliveryAttempt) -> None:
    metrics.webhook_deliveries.labels(webhook.event, attempt.outcome).inc()
    metrics.webhook_seconds.labels(webhook.event).observe(attempt.duration_ms / 1000)
