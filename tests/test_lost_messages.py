"""Task messages lost by the broker: the job is noticed as stalled and its work enqueued again.

Celery's Redis transport can lose a message it has just handed out when Redis dies before the
worker records it as unacknowledged (the soak run met this). Here the queue is emptied before
any worker runs, which loses the messages the same way; a worker started afterwards must still
finish every job.
"""

from __future__ import annotations

import io
import time
import zipfile

import cv2
import numpy as np
import pytest
import redis

from api.app import create_app
from shared.metrics import priority_list, queue_depth
from shared.queue.contract import QUEUE
from shared.storage.object_keys import result_key
from shared.storage.object_store import Storage
from tests.integration_fixtures import with_own_keys

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}


def png(width: int) -> bytes:
    ramp = np.linspace(20, 230, width, dtype=np.float32)[None, :].repeat(16, axis=0)
    return cv2.imencode(".png", ramp.astype(np.uint8))[1].tobytes()


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_jobs_whose_messages_were_lost_are_rescued(app_settings, start_worker) -> None:
    settings = with_own_keys(app_settings)
    broker = redis.Redis.from_url(settings.redis_url)
    client = create_app(settings).test_client()
    archive = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(zipped({f"p{i}.png": png(20 + i) for i in range(5)})), "photos.zip")},
        content_type="multipart/form-data",
    )
    single = client.post(
        "/v1/jobs", data={"file": (io.BytesIO(png(30)), "one.png")}, content_type="multipart/form-data"
    )
    assert archive.status_code == single.status_code == 202
    prefix = settings.redis_key_prefix
    assert queue_depth(broker, QUEUE, prefix) == 2  # the archive's expansion and the single image's chunk
    broker.delete(*(priority_list(QUEUE, level, prefix) for level in (0, 3, 6, 9)))  # both lost

    started = time.monotonic()
    start_worker(settings)
    jobs = {r.get_json()["id"]: r.get_json() for r in (archive, single)}
    deadline = started + settings.stall_after_s + 60
    while any(job["status"] not in TERMINAL for job in jobs.values()):
        assert time.monotonic() < deadline, jobs
        time.sleep(0.3)
        jobs = {job_id: client.get(f"/v1/jobs/{job_id}").get_json() for job_id in jobs}

    # Not before the job could have been taken for merely slow.
    assert time.monotonic() - started >= settings.stall_after_s - 1
    storage = Storage(settings)
    for job_id, job in jobs.items():
        assert job["status"] == "succeeded", job
        total = job["counts"]["total"]
        assert job["counts"] == {"total": total, "done": total, "failed": 0, "pending": 0}
        for index in range(total):
            assert storage.exists(result_key("local", job_id, index))
    assert sorted(job["counts"]["total"] for job in jobs.values()) == [1, 5]
