"""The queue's contract between the API and the workers: task names, lanes, and publishing.

Work comes in three lanes: interactive chunks (single images, jobs of one chunk) first, then
expansions, then the turns of bulk chunks (:mod:`worker.scheduling`). On Redis they share the
colorize queue by message priority: kombu's Redis transport keeps each priority in a list of its
own and serves the higher ones first, and every worker reserves one message per pool process.
On RabbitMQ (``Settings.broker_url`` amqp://) each lane is a durable quorum queue of its own:
quorum queues have no strict priorities, so a worker consumes all three and a bulk chunk hands
its process over while the queues ahead of it hold messages (:mod:`shared.queue.broker_queues`).
``-Q colorize`` names the lanes on either broker. The API publishes by task name and never
imports the task modules; Celery itself is configured in :mod:`shared.queue.celery_config`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from celery import Celery

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.jobs.records import Job

QUEUE = "colorize"
EXPAND_TASK = "colorize.expand_job"
COLORIZE_TASK = "colorize.colorize_chunk"
# A turn of the bulk lane: the task takes the next bulk chunk in round-robin order as it starts.
BULK_TURN_TASK = "colorize.bulk_turn"
# Message priorities in the colorize queue (the Redis transport's steps are 0, 3, 6 and 9;
# lower is served first).
INTERACTIVE_PRIORITY = 0
EXPANSION_PRIORITY = 3
BULK_PRIORITY = 6
# On RabbitMQ, each lane's queue (by the priority it has on Redis). The interactive lane keeps
# the queue's own name, so that ``-Q colorize`` and the colorize queue's depth mean the same there.
LANE_QUEUES = {INTERACTIVE_PRIORITY: QUEUE, EXPANSION_PRIORITY: f"{QUEUE}.expansions", BULK_PRIORITY: f"{QUEUE}.bulk"}
# Set on every colorize message: when it was published (seconds since the epoch), for the
# queue-wait metric.
ENQUEUED_AT_HEADER = "colorize_enqueued_at"
# Webhook deliveries wait on other people's servers: a queue of their own, so that a slow
# receiver never holds up colorizing (run e.g. ``-Q webhooks --pool threads``).
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_TASK = "colorize.deliver_webhook"


class ColorizeCelery(Celery):
    """A Celery app that carries the Settings it was built from to the tasks it runs."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("colorize", **kwargs)
        self.colorize_settings = settings


def settings_of(app: Celery) -> Settings:
    """The Settings of an app built by make_celery (typed as plain Celery where tasks and signals see it)."""
    return cast(ColorizeCelery, app).colorize_settings


def webhook_publisher(app: Celery) -> Callable[[dict[str, str]], None]:
    """Publishes one webhook message (``shared.webhooks.events.WebhookMessage.to_dict()``) for delivery."""

    def publish(message: dict[str, str]) -> None:
        app.send_task(WEBHOOK_TASK, args=(message,), queue=WEBHOOK_QUEUE)

    return publish


def _publish(app: Celery, task: str, args: tuple[Any, ...], priority: int) -> None:
    """Publish ``task`` in the lane of ``priority``: its queue on RabbitMQ, its priority on Redis."""
    headers = {ENQUEUED_AT_HEADER: time.time()}
    if settings_of(app).broker_is_amqp:
        app.send_task(task, args=args, queue=LANE_QUEUES[priority], headers=headers)
    else:
        app.send_task(task, args=args, queue=QUEUE, priority=priority, headers=headers)


def start_job(app: Celery, job: Job) -> None:
    """Enqueue a new job's first task: a single image's chunk in the interactive lane, an
    archive's expansion (which decides the lane of its chunks)."""
    if job.source_kind == "image":
        enqueue_chunk(app, job.id, [0])
    else:
        enqueue_expansion(app, job.id)


def enqueue_expansion(app: Celery, job_id: str) -> None:
    _publish(app, EXPAND_TASK, (job_id,), EXPANSION_PRIORITY)


def enqueue_chunk(app: Celery, job_id: str, indices: Sequence[int]) -> None:
    """A chunk in the interactive lane: served before expansions and bulk chunks."""
    _publish(app, COLORIZE_TASK, (job_id, list(indices)), INTERACTIVE_PRIORITY)


def enqueue_turns(app: Celery, count: int) -> None:
    """``count`` turns of the bulk lane, one per chunk just added to it."""
    for _ in range(count):
        _publish(app, BULK_TURN_TASK, (), BULK_PRIORITY)
