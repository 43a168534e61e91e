"""Tasks through RabbitMQ (``CELERY_BROKER_URL=amqp://...``) with job state in Redis.

Against a RabbitMQ node of the session's own, each test in a virtual host of its own: the lanes
are durable quorum queues, what waits in them is counted for the bulk hand-over and the
stalled-job rescue, and a job runs end to end through a worker. The broker-restart scenario is
in tests/test_faults.py.
"""

from __future__ import annotations

import io
import time
import zipfile

import cv2
import numpy as np
import pytest
import redis
import urllib3

from shared.jobs.bulk_lane import BulkLane
from shared.jobs.records import NewItem
from shared.jobs.store import JobStore
from shared.jobs.upkeep import StallWatch
from shared.queue.broker_queues import AmqpQueues, broker_queues
from shared.queue.celery_config import make_celery
from shared.queue.contract import LANE_QUEUES, QUEUE, WEBHOOK_QUEUE, enqueue_chunk, enqueue_expansion, enqueue_turns
from shared.settings import Settings
from tests.integration_fixtures import ApiServer, wait_until
from worker.housekeeping import rescue_stalled

pytestmark = pytest.mark.integration


def queue_types(rabbitmq_server, settings: Settings) -> dict[str, str]:
    vhost = settings.broker_url.rsplit("/", 1)[1]
    out = rabbitmq_server.ctl("-q", "list_queues", "-p", vhost, "name", "type")
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def ready_by_queue(app, names) -> dict[str, int]:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        return {name: channel.queue_declare(queue=name, passive=True).message_count for name in names}


def test_each_lane_is_a_quorum_queue_and_what_waits_is_counted(rabbit_settings, rabbitmq_server) -> None:
    app = make_celery(rabbit_settings)
    assert app.conf.broker_transport_options["confirm_publish"] is True
    queues = broker_queues(rabbit_settings)
    assert isinstance(queues, AmqpQueues)
    assert queues.waiting(QUEUE) == 0 and not queues.ahead_of_bulk_waiting()  # no queue declared yet

    enqueue_turns(app, 3)
    assert queues.waiting(QUEUE) == 3
    assert not queues.ahead_of_bulk_waiting()  # bulk turns only: nothing to hand over to
    enqueue_expansion(app, "job-a")
    assert queues.ahead_of_bulk_waiting()
    enqueue_chunk(app, "job-b", [0])
    assert queues.waiting(QUEUE) == 5 and queues.waiting(WEBHOOK_QUEUE) == 0

    types = queue_types(rabbitmq_server, rabbit_settings)
    assert {name: types.get(name) for name in LANE_QUEUES.values()} == {name: "quorum" for name in LANE_QUEUES.values()}
    assert ready_by_queue(app, LANE_QUEUES.values()) == {
        QUEUE: 1,
        f"{QUEUE}.expansions": 1,
        f"{QUEUE}.bulk": 3,
    }  # each lane in its own queue
    queues.close()


def test_the_rescue_waits_while_a_lane_holds_work_and_enqueues_once_all_are_empty(rabbit_settings) -> None:
    settings = rabbit_settings.with_overrides(chunk_size=2)
    client = redis.Redis.from_url(settings.redis_url)
    clock = [time.time()]
    jobs = JobStore(client, settings, clock=lambda: clock[0])
    stalls = StallWatch(client, settings.stall_after_s, clock=lambda: clock[0], namespace=settings.redis_namespace)
    bulk = BulkLane(client, settings.result_ttl_s, clock=lambda: clock[0], namespace=settings.redis_namespace)
    job = jobs.create_job(
        tenant="local", model="m", temperature=None, source_kind="zip", source_key="src", source_filename="a.zip"
    )
    jobs.add_items(job.id, [NewItem(i, f"{i}.png", f"{i}.jpg", 10) for i in range(2)])
    jobs.end_expansion(job.id)
    app = make_celery(settings)
    queues = broker_queues(settings)
    enqueue_turns(app, 1)  # another job's work, waiting in the bulk lane's queue

    clock[0] += settings.stall_after_s + 1
    assert rescue_stalled(jobs, stalls, bulk, queues, app, settings) == []  # waiting behind others
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(f"{QUEUE}.bulk")
    assert rescue_stalled(jobs, stalls, bulk, queues, app, settings) == [job.id]
    assert queues.waiting(QUEUE) == 1 and AmqpQueues(settings.broker_url).waiting(QUEUE) == 1
    assert AmqpQueues(settings.broker_url).ahead_of_bulk_waiting()  # one chunk: the interactive lane
    client.close()


def test_a_job_runs_end_to_end_with_tasks_on_rabbitmq(rabbit_settings, start_worker) -> None:
    settings = rabbit_settings.with_overrides(chunk_size=2, batch_size=2)
    [worker] = start_worker(settings, concurrency=2)
    api = ApiServer(settings)
    try:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for i in range(7):
                pixels = np.full((20, 24), 30 * i, np.uint8)
                archive.writestr(f"f/{i}.png", cv2.imencode(".png", pixels)[1].tobytes())
        http = urllib3.PoolManager()
        created = http.request(
            "POST", f"{api.url}/v1/jobs", fields={"file": ("f.zip", buffer.getvalue(), "application/zip")}
        )
        assert created.status == 202, created.data
        job_id = created.json()["id"]

        def ended() -> dict | None:
            job = http.request("GET", f"{api.url}/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "partially_succeeded", "failed", "canceled") else None

        job = wait_until(ended, 90, "the job ends")
        assert job["status"] == "succeeded" and job["counts"]["done"] == 7
        # Expansion, then four bulk chunks through their lanes; nothing left behind in any queue.
        queues = AmqpQueues(settings.broker_url)
        assert queues.waiting(QUEUE) == 0
        log = worker.log_path.read_text()
        assert "colorize.expand_job" in log and "colorize.bulk_turn" in log
    finally:
        api.stop()
        worker.stop()  # before its virtual host goes
