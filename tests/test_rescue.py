"""The stalled-job rescue against a real Redis: what it enqueues again, and when it holds back."""

from __future__ import annotations

import time

import pytest
import redis

from shared.jobs.bulk_lane import BulkLane
from shared.jobs.records import ItemResult, NewItem
from shared.jobs.store import JobStore
from shared.jobs.upkeep import StallWatch
from shared.queue.broker_queues import RedisQueues
from shared.queue.contract import BULK_TURN_TASK, COLORIZE_TASK, EXPAND_TASK, QUEUE
from shared.settings import Settings
from tests.integration_fixtures import with_own_keys
from worker.housekeeping import rescue_stalled

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class SentTasks:
    """Stands in for the Celery app: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple, str]] = []
        self.colorize_settings = Settings()  # Redis: lanes by priority in the one queue

    def send_task(self, name: str, args: tuple, queue: str, **options) -> None:
        self.sent.append((name, tuple(args), queue))


@pytest.fixture
def broker(service_settings: Settings):
    client = redis.Redis.from_url(service_settings.redis_url)
    yield client
    client.close()


def test_stalled_jobs_get_their_outstanding_work_again_once_nothing_is_queued(broker) -> None:
    clock = Clock()
    # Keys of its own, which no worker reads: the queue holds only what the test puts there.
    settings = with_own_keys(Settings(chunk_size=2))
    queue = settings.redis_key_prefix + QUEUE
    namespace = settings.redis_namespace
    jobs = JobStore(broker, settings, clock=clock)
    stalls = StallWatch(broker, settings.stall_after_s, clock=clock, namespace=namespace)
    bulk = BulkLane(broker, settings.result_ttl_s, clock=clock, namespace=namespace)
    unexpanded = jobs.create_job(
        tenant="local", model="m", temperature=None, source_kind="zip", source_key="src", source_filename="a.zip"
    ).id
    expanded = jobs.create_job(
        tenant="local", model="m", temperature=None, source_kind="zip", source_key="src", source_filename="b.zip"
    ).id
    jobs.mark_running(expanded)
    jobs.add_items(expanded, [NewItem(i, f"{i}.png", f"{i}.jpg", 10) for i in range(5)])
    jobs.end_expansion(expanded)
    jobs.record(expanded, [ItemResult.done(1), ItemResult.done(3)])
    small = jobs.create_job(
        tenant="local", model="m", temperature=None, source_kind="zip", source_key="src", source_filename="c.zip"
    ).id
    jobs.add_items(small, [NewItem(i, f"{i}.png", f"{i}.jpg", 10) for i in range(2)])
    jobs.end_expansion(small)
    bulk.push("local", expanded, [[1, 3]])  # a chunk whose turn was lost
    app = SentTasks()
    queues = RedisQueues(broker, settings.redis_key_prefix)

    clock.now += settings.stall_after_s + 1
    broker.rpush(queue, b"a task of another job")
    assert rescue_stalled(jobs, stalls, bulk, queues, app, settings) == []  # waiting behind others is not stalling
    assert app.sent == []

    broker.delete(queue)
    assert sorted(rescue_stalled(jobs, stalls, bulk, queues, app, settings)) == sorted([unexpanded, expanded, small])
    # A job of one chunk is interactive; a larger one gets its unfinished items as bulk chunks,
    # one turn each, in place of what waited in the lane.
    assert sorted(app.sent) == sorted(
        [
            (EXPAND_TASK, (unexpanded,), QUEUE),
            (COLORIZE_TASK, (small, [0, 1]), QUEUE),
            (BULK_TURN_TASK, (), QUEUE),
            (BULK_TURN_TASK, (), QUEUE),
        ]
    )
    claimed = [bulk.claim(f"turn-{n}") for n in range(3)]
    assert [(c.job_id, c.indices) for c in claimed[:2]] == [(expanded, [0, 2]), (expanded, [4])]
    assert claimed[2] is None
    assert rescue_stalled(jobs, stalls, bulk, queues, app, settings) == []  # leased: not enqueued twice meanwhile
    assert len(app.sent) == 4
