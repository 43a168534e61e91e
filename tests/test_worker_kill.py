"""Workers dying mid-chunk: the work is redone, every result exists exactly once, jobs end.

Workers here load ``tests.worker_faults``: each chunk announces itself and lingers, and an
item named ``poison`` kills its pool process whenever it is colorized. They use Redis keys of
their own (a broker included), so no other test's worker takes their tasks.
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import cv2
import numpy as np
import pytest
import redis

from api.app import create_app
from shared.storage.object_keys import job_prefix, result_key
from shared.tenancy.storage_quota import job_owner
from tests.fault_marks import chunks_key
from tests.integration_fixtures import broker_idle, wait_until, with_own_keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def kill_settings(app_settings):
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def faulty_workers(kill_settings, start_worker):
    return start_worker(kill_settings, count=2, extra_modules=("tests.worker_faults",))


@pytest.fixture(scope="module")
def app(kill_settings):
    return create_app(kill_settings)


@pytest.fixture(scope="module")
def chunk_log(kill_settings) -> redis.Redis:
    return redis.Redis.from_url(kill_settings.redis_url)


def image(i: int) -> bytes:
    x = np.linspace(20, 230, 24 + i, dtype=np.float32)[None, :].repeat(20, axis=0)
    return cv2.imencode(".png", x.astype(np.uint8))[1].tobytes()


def submit(app, files: dict[str, bytes]) -> dict:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    response = app.test_client().post(
        "/v1/jobs", data={"file": (io.BytesIO(buffer.getvalue()), "batch.zip")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202
    return response.get_json()


def wait_for_end(app, job_id: str, timeout_s: float = 60) -> dict:
    client = app.test_client()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").get_json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']}: {job['counts']}")


def next_chunk(chunk_log: redis.Redis, settings, job_id: str, timeout_s: int = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        popped = chunk_log.blpop([chunks_key(settings)], timeout=1)
        if popped is not None:
            record = json.loads(popped[1])
            if record["job"] == job_id:
                return record
    raise AssertionError("no worker picked up a chunk")


def result_objects(storage, job_id: str) -> set[str]:
    expected_prefix = result_key("local", job_id, 0).rsplit("/", 1)[0]
    return {
        key
        for key in storage.iter_keys(job_prefix("local", job_id))
        if key.startswith(expected_prefix) and key.endswith(".jpg")
    }


def test_killed_worker_chunk_is_redone_exactly_once(app, faulty_workers, chunk_log, kill_settings) -> None:
    n = 8
    job = submit(app, {f"set/{i}.png": image(i) for i in range(n)})
    held = next_chunk(chunk_log, kill_settings, job["id"])
    (victim,) = [w for w in faulty_workers if w.pid == held["worker_pid"]]
    victim.kill()  # the whole worker, pool included, while it holds the chunk unacknowledged

    job = wait_for_end(app, job["id"])
    assert job["status"] == "succeeded"
    assert job["counts"] == {"total": n, "done": n, "failed": 0, "pending": 0}

    services = app.extensions["colorize"]
    attempts = services.jobs.attempts(job["id"], range(n))
    for index in range(n):
        # The killed chunk's items ran twice; the rest once.
        assert attempts[index] == (2 if index in held["indices"] else 1), attempts
    keys = result_objects(services.storage, job["id"])
    assert keys == {result_key("local", job["id"], i) for i in range(n)}
    for key in keys:
        pixels = cv2.imdecode(np.frombuffer(services.storage.get_bytes(key), np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.shape[0] == 20


def test_poison_item_fails_after_max_attempts(app, faulty_workers, chunk_log, kill_settings, start_worker) -> None:
    if not any(w.process.poll() is None for w in faulty_workers):
        start_worker(kill_settings, count=1, extra_modules=("tests.worker_faults",))
    job = submit(app, {"a.png": image(1), "poison.png": image(2), "c.png": image(3)})
    job = wait_for_end(app, job["id"])
    assert job["status"] == "partially_succeeded"
    assert (job["counts"]["done"], job["counts"]["failed"]) == (2, 1)
    items = {i["path"]: i for i in app.test_client().get(f"/v1/jobs/{job['id']}/items").get_json()["items"]}
    assert items["poison.png"]["error"]["code"] == "processing_failed"
    assert items["a.png"]["status"] == items["c.png"]["status"] == "done"
    attempts = app.extensions["colorize"].jobs.attempts(job["id"], [items["poison.png"]["index"]])
    assert attempts == [kill_settings.item_max_attempts + 1]


def test_cancel_drops_pending_work_and_keeps_results(
    app, faulty_workers, chunk_log, kill_settings, start_worker
) -> None:
    if not any(w.process.poll() is None for w in faulty_workers):
        start_worker(kill_settings, count=1, extra_modules=("tests.worker_faults",))
    n = 12
    job = submit(app, {f"{i}.png": image(i) for i in range(n)})
    next_chunk(chunk_log, kill_settings, job["id"])
    client = app.test_client()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    # Chunks in flight finish, queued ones are dropped; after that no task is left to change the job.
    wait_until(lambda: broker_idle(kill_settings), 30, "the canceled job's tasks are done")
    final = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert final["status"] == "canceled"
    assert final["counts"]["done"] < n
    items = client.get(f"/v1/jobs/{job['id']}/items").get_json()["items"]
    done = [i for i in items if i["status"] == "done"]
    assert {i["status"] for i in items} <= {"done", "canceled"}
    assert len([i for i in items if i["status"] == "canceled"]) > 0
    for item in done:
        assert client.get(item["result_url"]).status_code == 302
    assert broker_idle(kill_settings)  # still: nothing was enqueued again meanwhile
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["counts"] == final["counts"]


def test_a_job_deleted_while_a_chunk_runs_leaves_nothing_once_that_chunk_ends(
    app, faulty_workers, chunk_log, kill_settings, start_worker
) -> None:
    if not any(w.process.poll() is None for w in faulty_workers):
        start_worker(kill_settings, count=1, extra_modules=("tests.worker_faults",))
    n = 12
    job = submit(app, {f"set/{i}.png": image(i) for i in range(n)})
    # The chunk announced lingers before inference: it colorizes and stores after the deletion.
    next_chunk(chunk_log, kill_settings, job["id"])
    client = app.test_client()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    deleted_at = time.monotonic()
    wait_until(lambda: broker_idle(kill_settings), 30, "the chunk in hand has ended")
    services = app.extensions["colorize"]
    leftover = list(services.storage.iter_keys(job_prefix("local", job["id"])))
    assert leftover == [], f"{len(leftover)} objects {time.monotonic() - deleted_at:.1f} s after the deletion"
    assert services.stored.counted("local", job_owner(job["id"])) == 0
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
