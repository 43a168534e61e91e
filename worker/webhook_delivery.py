"""Webhook deliveries: the task on the ``webhooks`` queue, one signed POST per attempt, retried with backoff.

Each attempt is recorded on the job (``GET /v1/jobs/{id}/webhooks``). A failed attempt (no
answer within the timeout, a refused connection, a status outside 2xx, a host that does not
resolve) is retried after ``retry_delay_s`` until ``webhook_max_attempts``; a refused one (the
host now resolves to a forbidden address) is not. Headers follow the Standard Webhooks
scheme: ``webhook-id`` (the same on every attempt, for the receiver to drop repeats),
``webhook-timestamp`` (unix seconds of the attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``). Each attempt connects to the very
address it checked (:mod:`shared.network.addresses`); redirects are not followed.

Events of one job are delivered in the order they happened: a message whose predecessor is
neither delivered nor given up yet is published again ``ORDER_POLL_S`` later, without an
attempt, for at most ``ORDER_WAIT_S``; then it goes anyway (its body's ``sequence`` still lets
the receiver order it).

This module loads nothing of the colorize pipeline: a worker that only delivers webhooks
stays small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import urllib3
from celery import Task, shared_task
from celery.utils.log import get_task_logger
from standardwebhooks.webhooks import Webhook

from shared.errors import InvalidRequest
from shared.network.addresses import (
    AddressPolicy,
    ForbiddenAddress,
    IPAddress,
    Resolver,
    permitted_addresses,
    pinned_pool,
    resolve,
)
from shared.queue.contract import WEBHOOK_QUEUE, WEBHOOK_TASK
from shared.settings import Settings
from shared.timestamps import iso_time
from shared.webhooks.callback_urls import CallbackTarget, parse_callback_url
from shared.webhooks.events import (
    DeliveryAttempt,
    DeliveryLog,
    DeliveryOrder,
    DeliveryOutcome,
    WebhookMessage,
    WebhookSecrets,
)
from worker.context import worker_context
from worker.retry_policy import countdown_cap_s

log = get_task_logger(__name__)

# Receivers answer with a status; anything longer than this is not read.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "colorize-webhooks/1"
# How often a message that waits for its predecessor looks again, and for how long at most.
ORDER_POLL_S = 0.5
ORDER_WAIT_S = 30.0
DEFERRED = "deferred"


@shared_task(name=WEBHOOK_TASK, bind=True, max_retries=None)
def deliver_webhook(self: Task[Any, Any], message: dict[str, Any], waited_s: float = 0.0) -> str:
    """Make one delivery attempt; returns its outcome (delivered | failed | refused), or
    ``deferred`` when an earlier event of the job is still being delivered."""
    ctx = worker_context(self.app)
    settings = ctx.settings
    webhook = WebhookMessage.from_dict(message)
    number = self.request.retries + 1
    order = DeliveryOrder(ctx.redis, settings.redis_namespace)
    if number == 1 and waited_s < ORDER_WAIT_S and not order.due(webhook):
        self.app.send_task(
            WEBHOOK_TASK,
            args=(message,),
            kwargs={"waited_s": waited_s + ORDER_POLL_S},
            queue=WEBHOOK_QUEUE,
            countdown=ORDER_POLL_S,
        )
        return DEFERRED
    secret = WebhookSecrets(ctx.redis, settings.redis_namespace).get_or_create(webhook.tenant)
    attempt = deliver(webhook, secret, number, settings)
    delay = retry_delay_s(number, settings) if attempt.retryable and number < settings.webhook_max_attempts else None
    if delay is not None:
        attempt = replace(attempt, next_attempt_at=iso_time(time.time() + delay))
    deliveries = DeliveryLog(ctx.redis, settings.redis_namespace)
    deliveries.record(webhook.job_id, attempt, keep_until=ctx.jobs.expiry(webhook.job_id))
    ctx.metrics.webhook_deliveries.labels(webhook.event, attempt.outcome).inc()
    ctx.metrics.webhook_seconds.labels(webhook.event).observe(attempt.duration_ms / 1000)
    extra = {"job_id": webhook.job_id, "event": webhook.event, "attempt": number, "status_code": attempt.status_code}
    if delay is None:
        order.settle(webhook)  # the next event of the job may go
    if attempt.outcome == DeliveryOutcome.DELIVERED:
        log.info("webhook %s delivered", webhook.id, extra=extra)
    elif delay is not None:
        log.warning("webhook %s failed (%s); retrying in %.1f s", webhook.id, attempt.error, delay, extra=extra)
        raise self.retry(countdown=delay)
    else:
        log.error(
            "webhook %s %s after %d attempts: %s", webhook.id, attempt.outcome, number, attempt.error, extra=extra
        )
    return attempt.outcome


def retry_delay_s(attempt: int, settings: Settings) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): doubling from the base, capped."""
    cap = min(settings.webhook_retry_max_s, countdown_cap_s(settings))
    return min(settings.webhook_retry_base_s * 2.0 ** (attempt - 1), cap)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def deliver(
    message: WebhookMessage,
    secret: str,
    attempt: int,
    settings: Settings,
    resolver: Resolver = resolve,
    clock: Callable[[], float] = time.time,
) -> DeliveryAttempt:
    """One attempt: resolve and check the callback host, then POST the signed message to the checked address."""
    started = clock()
    started_monotonic = time.monotonic()

    def result(outcome: DeliveryOutcome, status_code: int | None = None, error: str | None = None) -> DeliveryAttempt:
        return DeliveryAttempt(
            message_id=message.id,
            event=message.event,
            attempt=attempt,
            outcome=outcome,
            status_code=status_code,
            error=error,
            started_at=iso_time(started),
            duration_ms=round((time.monotonic() - started_monotonic) * 1000),
        )

    try:
        target = parse_callback_url(message.url)
        address = permitted_addresses(target, AddressPolicy.from_settings(settings), resolver, field="callback_url")[0]
    except ForbiddenAddress as exc:
        return result(DeliveryOutcome.REFUSED, error=f"{exc.message} ({exc.details.get('address')})")
    except InvalidRequest as exc:
        return result(DeliveryOutcome.FAILED, error=exc.message)  # a host that stopped resolving may come back
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret, message.id, int(clock()), message.body),
    }
    try:
        status = _post(target, address, headers, message.body.encode(), settings.webhook_timeout_s)
    except urllib3.exceptions.HTTPError as exc:
        return result(DeliveryOutcome.FAILED, error=_describe(exc))
    except OSError as exc:
        return result(DeliveryOutcome.FAILED, error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return result(DeliveryOutcome.DELIVERED, status_code=status)
    return result(DeliveryOutcome.FAILED, status_code=status, error=f"the receiver answered {status}")


def _post(target: CallbackTarget, address: IPAddress, headers: dict[str, str], body: bytes, timeout_s: float) -> int:
    pool = pinned_pool(target, address, timeout_s)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=headers,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            response.read(MAX_RESPONSE_BYTES)
        finally:
            response.release_conn()
        return response.status
    finally:
        pool.close()


def _describe(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"
