"""The one place Celery is configured, for workers and for the API that publishes to them.

``make_celery(settings)`` builds the app: its broker (Redis or RabbitMQ), routes, acknowledgement
and time limits. The worker command's module-level app is :mod:`worker.celery_app`; what goes on
the queues is :mod:`shared.queue.contract`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from celery import Celery
from celery.signals import celeryd_after_setup
from kombu import Exchange, Queue
from kombu.transport import redis as kombu_redis

from shared.queue.contract import (
    BULK_TURN_TASK,
    COLORIZE_TASK,
    LANE_QUEUES,
    QUEUE,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    ColorizeCelery,
)
from shared.settings import Settings

if TYPE_CHECKING:
    from celery.worker import WorkController


class _BrokerChannel(kombu_redis.Channel):
    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(connection, *args, **kwargs)
        self._broker = connection.client

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        # When the broker connection is lost, Celery detaches the transport from it (client =
        # None) while tasks received on this channel still run; their acks, and the requeue of
        # unacknowledged messages as the channel closes, then build a new client from that
        # client and fail with AttributeError, which Celery treats as fatal: the worker exits.
        # With the address back they reach the broker once it is up, and while it is down fail
        # with a connection error, which Celery tolerates (the messages stay in the broker's
        # unacked index and are redelivered after the visibility timeout).
        if self.connection.client is None:
            self.connection.client = self._broker
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]  # kombu's, not in its stubs
        return params


class BrokerTransport(kombu_redis.Transport):
    """kombu's Redis transport, surviving a Redis restart (see _BrokerChannel)."""

    Channel = _BrokerChannel


def make_celery(settings: Settings) -> ColorizeCelery:
    if not settings.celery_broker_url:
        raise ValueError("settings.redis_url or settings.broker_url must be set (the broker URL)")
    app = ColorizeCelery(
        settings,
        broker=settings.celery_broker_url,
        include=["worker.tasks", "worker.webhook_delivery", "worker.housekeeping", "worker.observability"],
    )
    if urlparse(settings.celery_broker_url).scheme in ("redis", "rediss"):
        app.conf.broker_transport = f"{__name__}:BrokerTransport"
    app.conf.update(
        task_default_queue=QUEUE,
        # Exact names are matched before patterns.
        task_routes={WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}, "colorize.*": {"queue": QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        # Job state lives in Redis through shared.jobs.store; nobody reads Celery results.
        task_ignore_result=True,
        result_backend=None,
        # Ack only after the task body returns: a worker that dies mid-chunk leaves the message
        # unacknowledged, so the broker hands it to another worker. Tasks are idempotent (result
        # keys are deterministic per item, item completion is counted once), so a redo is safe.
        task_acks_late=True,
        # When a pool process is killed (OOM killer, segfault in a decoder, SIGKILL) requeue its
        # task at once instead of acking it as failed, which would strand the chunk's items.
        task_reject_on_worker_lost=True,
        # A hard time limit kills the pool process like any crash: requeue rather than ack, and
        # let the per-item attempt counter fail a poison item after item_max_attempts.
        task_acks_on_timeout=False,
        # Each worker process reserves one chunk at a time; prefetching more would park chunks
        # on a busy worker while idle ones on other machines wait, and a crash would delay them all.
        worker_prefetch_multiplier=1,
        broker_transport_options=_redis_transport_options(settings),
        task_annotations={
            # Soft limit raises inside the chunk so it can requeue its unfinished items cleanly;
            # the hard limit kills a process stuck in native code (a hung decoder or inference).
            # Expansion has none: a large archive legitimately streams for long, and a lease
            # renewed as it progresses (worker.expansion.ExpansionLease) guards it instead.
            COLORIZE_TASK: {
                "soft_time_limit": settings.task_soft_time_limit_s,
                "time_limit": settings.task_time_limit_s,
            },
            BULK_TURN_TASK: {
                "soft_time_limit": settings.task_soft_time_limit_s,
                "time_limit": settings.task_time_limit_s,
            },
            # A backstop over the attempt's own timeouts (name resolution has none of its own).
            WEBHOOK_TASK: {"time_limit": int(settings.webhook_timeout_s * 3) + 10},
        },
        # Pool processes load the configured model at start; the default 4 s would kill them mid-load.
        worker_proc_alive_timeout=120.0,
        worker_concurrency=settings.worker_processes,
        # Without a result backend there is nothing to gain from task-state events.
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.broker_is_amqp:
        app.conf.update(_amqp_configuration())
    return app


def _redis_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        # A message unacked for this long is handed to another worker (the whole worker
        # machine vanished). Must exceed the longest chunk or it would run twice in parallel.
        "visibility_timeout": settings.visibility_timeout_s,
        # Sweep for such messages often enough that recovery follows the timeout closely.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
        # Queues, bindings and unacknowledged messages under the service's key prefix.
        "global_keyprefix": settings.redis_key_prefix,
    }


def _quorum_queue(name: str) -> Queue:
    # A topic exchange per queue: Celery's native delayed delivery (countdowns of retries on
    # quorum queues) routes through topic bindings, and cannot through direct ones.
    return Queue(
        name,
        Exchange(name, type="topic", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


def _amqp_configuration() -> dict[str, Any]:
    """Celery on RabbitMQ: durable quorum queues, one per lane and one for webhooks, published
    to with confirms; a worker knows a connection is gone and redelivery follows at once (no
    visibility timeout)."""
    return {
        "task_queues": [_quorum_queue(name) for name in (*LANE_QUEUES.values(), WEBHOOK_QUEUE)],
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        # The publish returns once the broker has the message (on a quorum queue: on a majority
        # of its replicas); a message it could not take raises instead of vanishing.
        "broker_transport_options": {"confirm_publish": True},
        # Publishing waits out a broker restart (about half a minute) before it gives up.
        "task_publish_retry_policy": {"max_retries": 20, "interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        # A chunk in hand when the connection drops runs to its end (its items are counted in
        # Redis); the broker redelivers its unacknowledged message, and the copy finds them done.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


@celeryd_after_setup.connect
def _consume_every_lane(sender: str, instance: WorkController, **kwargs: Any) -> None:
    app = instance.app
    settings = getattr(app, "colorize_settings", None)
    if settings is None or not settings.broker_is_amqp:
        return
    queues = app.amqp.queues
    # ``-Q colorize`` on RabbitMQ: the interactive lane's queue, and the other two lanes'.
    if QUEUE in queues.consume_from:
        for name in LANE_QUEUES.values():
            queues.select_add(queues[name])
    # Every queue and its exchange exist before Celery binds them for delayed delivery, also
    # those this worker does not consume from (it may publish to them, retries included).
    with app.connection_for_write() as connection:
        connection.ensure_connection()
        for queue in queues.values():
            queue(connection.default_channel).declare()


def colorizes(app: Celery) -> bool:
    """Whether this worker takes colorize tasks (``-Q`` names the colorize queue, or no queue at all)."""
    consumes = app.amqp.queues.consume_from
    return not consumes or QUEUE in consumes
