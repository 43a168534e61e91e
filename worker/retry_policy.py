"""When a failed task runs again, and when it gives up.

A retry waits unacknowledged on a worker until its countdown ends: longer than the visibility
timeout and the broker would hand it out a second time meanwhile. Every countdown a worker
sets (task retries, webhook retries, a busy expansion lease) is therefore capped by
:func:`countdown_cap_s`.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.utils.log import get_task_logger

from shared.errors import ColorizeError, ProcessingFailed, ServiceUnavailable
from shared.queue.contract import settings_of
from shared.settings import Settings

log = get_task_logger(__name__)

# Storage and Redis hiccups: the task is retried later instead of failing its items.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ServiceUnavailable, redis.ConnectionError, redis.TimeoutError)
# The longest wait between two retries of a task.
MAX_BACKOFF_S = 60


def countdown_cap_s(settings: Settings) -> float:
    """The longest countdown a task may wait for without being delivered twice."""
    return settings.visibility_timeout_s / 2


def backoff_cap_s(settings: Settings) -> int:
    return max(1, min(MAX_BACKOFF_S, int(countdown_cap_s(settings))))


def retry_limit(task: Task[Any, Any], exc: Exception) -> int:
    """Retries allowed for ``exc``: a few for a failure of the task itself, and for storage or
    Redis being away as many as fill ``settings.outage_retry_s`` of backoff: an outage is not
    the items' fault, and the job should complete once the service is back."""
    own_limit = task.max_retries
    if own_limit is None:
        raise ValueError(f"task {task.name} must set max_retries")
    if not isinstance(exc, TRANSIENT_ERRORS):
        return own_limit
    settings = settings_of(task.app)
    cap, waited, retries = backoff_cap_s(settings), 0.0, 0
    while waited < settings.outage_retry_s:
        waited += min(cap, 2**retries)
        retries += 1
    return max(retries, own_limit)


def may_retry(task: Task[Any, Any], exc: Exception) -> bool:
    return task.request.retries < retry_limit(task, exc)


def retry_later(task: Task[Any, Any], exc: Exception) -> None:
    """Retry ``task`` after a backoff. When the retry cannot be published (the broker is down as
    well, e.g. Redis restarting), Celery would reject the message without requeueing it and its
    work would be lost: reject it with requeue instead, or, if even that cannot reach the broker,
    leave it unacknowledged for redelivery after the visibility timeout."""
    countdown = min(backoff_cap_s(settings_of(task.app)), 2**task.request.retries)
    try:
        raise task.retry(exc=exc, countdown=countdown, max_retries=retry_limit(task, exc))
    except Reject as refused:
        reason = refused.reason  # type: ignore[attr-defined]  # set by Reject, missing from celery-types
        log.warning("could not schedule the retry (%r); requeueing the task", reason)
        raise Reject(exc, requeue=True) from refused


def give_up_error(exc: Exception, message: str) -> ColorizeError:
    """The error recorded when a task has run out of retries."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return ServiceUnavailable("storage or the state store stayed unavailable")
    return ProcessingFailed(message)
