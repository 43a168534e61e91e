"""Webhook events of jobs: what is published, signing secrets, and the record of each delivery.

:class:`WebhookNotifier` listens to the job store and turns a job's start, its throttled
progress and its one finish into messages, each published once for delivery on the
``webhooks`` queue (:mod:`worker.webhook_delivery`). Deliveries follow the Standard Webhooks
scheme (https://www.standardwebhooks.com), signed with the tenant's secret
``whsec_<base64>``. The body is JSON::

    {"type": "job.started" | "job.progress" | "job.completed",
     "timestamp": "<ISO 8601 time of the event>",
     "sequence": <the event's number among the job's events, from 1>,
     "data": <the job, as GET /v1/jobs/{id} shows it>}

Events of one job are numbered as they happen (one counter per job in Redis) and delivered in
that order: a message waits, briefly, until the one before it has been delivered or given up
(:class:`DeliveryOrder`, used by :mod:`worker.webhook_delivery`).

Every delivery attempt is recorded on the job (``GET /v1/jobs/{id}/webhooks``) and kept as
long as the job.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, cast

from redis import Redis

from shared.jobs.documents import COMPLETED, EVENT_TYPES, PROGRESS, STARTED, JobDocument, WebhookEvent
from shared.jobs.listeners import JobListener
from shared.jobs.records import ItemResult, Job
from shared.redis_keys import NAMESPACE, KeyedScript, RedisKeys
from shared.settings import Settings
from shared.timestamps import iso_time

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Attempt records kept per job; the newest win.
MAX_RECORDS = 1000


# --- secrets ------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookSecrets:
    """One signing secret per tenant, made on first use and kept until rotated."""

    def __init__(self, redis: Redis, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self._keys = RedisKeys(namespace)

    def key(self, tenant: str) -> str:
        return self._keys.webhook_secret(tenant)

    def get_or_create(self, tenant: str) -> str:
        key = self.key(tenant)
        self.redis.set(key, new_secret(), nx=True)  # concurrent first uses agree on one secret
        # Set just above, with no expiry; the service's Redis clients answer bytes (no decode_responses).
        return cast(bytes, self.redis.get(key)).decode()

    def rotate(self, tenant: str) -> str:
        secret = new_secret()
        self.redis.set(self.key(tenant), secret)
        return secret


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookMessage:
    """One event for one job, as published for delivery: the body is fixed, every attempt sends it as is."""

    id: str
    job_id: str
    tenant: str
    event: str
    url: str
    body: str
    sequence: int = 0  # the event's number among the job's (0: published before events were numbered)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WebhookMessage:
        fields = {k: raw[k] for k in ("id", "job_id", "tenant", "event", "url", "body")}
        return cls(**fields, sequence=int(raw.get("sequence", 0)))


def message_for(
    job: Job, event: str, at: float, public_url: str | None, sequence: int, progress_step: int | None = None
) -> WebhookMessage:
    # Ids follow from the job and event, so a message published twice is one message to the receiver.
    suffix = f"_{progress_step}" if progress_step is not None else ""
    body = WebhookEvent(
        type=EVENT_TYPES[event], timestamp=iso_time(at), sequence=sequence, data=JobDocument.of(job, public_url)
    )
    return WebhookMessage(
        id=f"msg_{job.id}_{event}{suffix}",
        job_id=job.id,
        tenant=job.tenant,
        event=event,
        url=job.callback_url or "",
        # As the API writes the job (api/bodies.py): a link left unset is left out, not null.
        body=json.dumps(body.model_dump(mode="json", exclude_unset=True), separators=(",", ":")),
        sequence=sequence,
    )


# ARGV: now interval_s step expires_at   -> sequence number, or 0 when held back
_LUA_PROGRESS_GATE = """
local last_step = tonumber(redis.call('HGET', throttle, 'step') or '0')
local last_at = tonumber(redis.call('HGET', throttle, 'at') or '-1e18')
local step = tonumber(ARGV[3])
if step <= last_step then return 0 end
if tonumber(ARGV[1]) - last_at < tonumber(ARGV[2]) then return 0 end
local sequence = redis.call('HINCRBY', throttle, 'seq', 1)
redis.call('HSET', throttle, 'step', step, 'at', ARGV[1])
redis.call('EXPIREAT', throttle, math.ceil(tonumber(ARGV[4])))
return sequence
"""


class WebhookNotifier(JobListener):
    """Publishes the webhook messages of jobs with a callback URL; a job store listener.

    The job store hands each change the job as it left it, so a job without a callback costs
    nothing, and a progress event one throttle check per batch of finished items."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        publish: Callable[[dict[str, str]], None],
        clock: Callable[[], float] = time.time,
        namespace: str | None = None,
    ) -> None:
        """``namespace``: of the keys; None: ``settings.redis_namespace``."""
        namespace = settings.redis_namespace if namespace is None else namespace
        self.settings = settings
        self._publish = publish
        self._clock = clock
        self._keys = RedisKeys(namespace)
        self._log = DeliveryLog(redis, namespace)
        self._gate = KeyedScript(redis, ["throttle"], _LUA_PROGRESS_GATE)
        self._order = DeliveryOrder(redis, namespace)

    def job_started(self, job: Job) -> None:
        if job.callback_url and STARTED in job.webhook_events:
            self._emit(job, STARTED)

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        if not job.callback_url or PROGRESS not in job.webhook_events or job.is_terminal:
            return  # once the job has ended, the completed event says the rest
        processed = job.done + job.failed
        if job.expanded and processed >= job.total:
            return
        step_pct = self.settings.webhook_progress_step_pct
        step = processed if step_pct == 0 else (processed * 100 // job.total // step_pct if job.total else 0)
        sequence = self._gate(
            {"throttle": self._keys.job(job.id).webhook_progress},
            [repr(self._clock()), self.settings.webhook_progress_interval_s, step, job.expires_at],
        )
        if sequence:
            self._emit(job, PROGRESS, progress_step=int(sequence))

    def job_finished(self, job: Job) -> None:
        if not job.callback_url:
            return
        # The job's expiry was renewed as it finished; its webhook records follow it.
        self._log.keep_until(job.id, job.expires_at)
        if COMPLETED in job.webhook_events:
            self._emit(job, COMPLETED)

    def _emit(self, job: Job, event: str, progress_step: int | None = None) -> None:
        sequence = self._order.number(job.id, job.expires_at)
        message = message_for(job, event, self._clock(), self.settings.public_url, sequence, progress_step)
        self._publish(message.to_dict())


class DeliveryOrder:
    """The numbers of a job's events, and which of them have been settled (delivered or given up).

    Kept in the job's webhook hash (``colorize:job:{id}:webhook-progress``), which expires with the job."""

    def __init__(self, redis: Redis, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self._keys = RedisKeys(namespace)

    def _key(self, job_id: str) -> str:
        return self._keys.job(job_id).webhook_progress

    def number(self, job_id: str, expires_at: float) -> int:
        """The next event number of the job, from 1."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self._key(job_id), "events", 1)
        pipe.expireat(self._key(job_id), int(expires_at) + 1)
        return int(pipe.execute()[0])

    def settle(self, message: WebhookMessage) -> None:
        """Delivering ``message`` is over (delivered, refused or out of attempts)."""
        self.redis.hset(self._key(message.job_id), f"settled:{message.sequence}", 1)

    def due(self, message: WebhookMessage) -> bool:
        """Whether every earlier event of the job has been settled (an unnumbered message always is)."""
        if message.sequence <= 1:
            return True
        return bool(self.redis.hexists(self._key(message.job_id), f"settled:{message.sequence - 1}"))


# --- delivery records ---------------------------------------------------------------------


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # retried until webhook_max_attempts
    REFUSED = "refused"  # the callback host now resolves to a forbidden address: not retried


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt at delivering a message, as ``GET /v1/jobs/{id}/webhooks`` lists it."""

    message_id: str
    event: str
    attempt: int
    outcome: DeliveryOutcome
    status_code: int | None
    error: str | None
    started_at: str
    duration_ms: int
    next_attempt_at: str | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome == DeliveryOutcome.FAILED


class DeliveryLog:
    """Every delivery attempt of a job's messages, kept as long as the job."""

    def __init__(self, redis: Redis, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self._keys = RedisKeys(namespace)

    def key(self, job_id: str) -> str:
        return self._keys.job(job_id).deliveries

    def record(self, job_id: str, attempt: DeliveryAttempt, keep_until: float | None) -> None:
        """Add an attempt, kept until ``keep_until`` (the job's expiry; None: the job is gone)."""
        key = self.key(job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(asdict(attempt), separators=(",", ":")))
        pipe.ltrim(key, -MAX_RECORDS, -1)
        if keep_until is not None:
            pipe.expireat(key, int(keep_until) + 1)
        else:
            pipe.expire(key, 3600)  # the job is gone; keep the record briefly only
        pipe.execute()

    def keep_until(self, job_id: str, expires_at: float) -> None:
        self.redis.expireat(self.key(job_id), int(expires_at) + 1)

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(self.key(job_id), 0, -1)]
