"""What waits in the broker's queues, on either broker: the colorize queue's depth (every lane)
and whether work is waiting ahead of the bulk lane.

On Redis, kombu keeps a queue's messages of each priority in a list of its own
(:func:`shared.metrics.queue_depth`); on RabbitMQ each lane is a queue of its own
(``shared.queue.contract.LANE_QUEUES``), counted by a passive declare. Either way only messages
ready for delivery count: those a worker has reserved are not waiting. Built per process
(connections must not cross a fork): :func:`broker_queues`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import redis
from amqp.exceptions import NotFound
from kombu import Connection

from shared.metrics import priority_list, queue_depth
from shared.queue.contract import EXPANSION_PRIORITY, INTERACTIVE_PRIORITY, LANE_QUEUES, QUEUE
from shared.settings import Settings

log = logging.getLogger(__name__)

_AHEAD_OF_BULK = (INTERACTIVE_PRIORITY, EXPANSION_PRIORITY)


class BrokerQueues(Protocol):
    def waiting(self, queue: str) -> int:
        """Messages ready in ``queue`` (the colorize queue: in every lane)."""

    def ahead_of_bulk_waiting(self) -> bool:
        """Whether interactive chunks or expansions wait: a bulk chunk hands its process over."""


class RedisQueues:
    """The queues of kombu's Redis transport, under the service's key prefix."""

    def __init__(self, client: redis.Redis, key_prefix: str = "") -> None:
        self.client = client
        self.key_prefix = key_prefix

    def waiting(self, queue: str) -> int:
        return queue_depth(self.client, queue, self.key_prefix)

    def ahead_of_bulk_waiting(self) -> bool:
        pipe = self.client.pipeline(transaction=False)
        for priority in _AHEAD_OF_BULK:
            pipe.llen(priority_list(QUEUE, priority, self.key_prefix))
        return any(pipe.execute())


class AmqpQueues:
    """The lanes' queues on RabbitMQ, counted by passive declares on one connection of this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: Connection | None = None
        # A py-amqp channel; kombu's stubs know it only as the transport-neutral StdChannel.
        self._channel: Any = None
        # One channel, one declare at a time (the API's greenlets share this object).
        self._lock = threading.Lock()

    def _ready(self, queue: str) -> int:
        with self._lock:
            return self._declare(queue)

    def _declare(self, queue: str) -> int:
        if self._connection is None:
            self._connection = Connection(self.url, connect_timeout=5)
        try:
            if self._channel is None:
                self._channel = self._connection.channel()
            return int(self._channel.queue_declare(queue=queue, passive=True).message_count)
        except NotFound:
            self._channel = None  # the broker closes the channel: no such queue (yet), nothing waits
            return 0
        except Exception:
            self.close()  # a lost connection: the next call connects again
            raise

    def waiting(self, queue: str) -> int:
        if queue == QUEUE:
            return sum(self._ready(name) for name in LANE_QUEUES.values())
        return self._ready(queue)

    def ahead_of_bulk_waiting(self) -> bool:
        try:
            return any(self._ready(LANE_QUEUES[priority]) for priority in _AHEAD_OF_BULK)
        except Exception as exc:  # noqa: BLE001  # whatever the broker client raises: go on, as said below
            # Handing over is a courtesy to waiting work: with the broker away, the chunk goes on.
            log.warning("could not count the queues ahead of the bulk lane: %r", exc)
            return False

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
        self._connection = None
        self._channel = None


def broker_queues(settings: Settings) -> BrokerQueues:
    """The queues of the broker ``settings`` name (``Settings.celery_broker_url``)."""
    url = settings.celery_broker_url
    if url is None:
        raise ValueError("settings.redis_url or settings.broker_url must be set (the broker URL)")
    if settings.broker_is_amqp:
        return AmqpQueues(url)
    return RedisQueues(
        redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10), settings.redis_key_prefix
    )
