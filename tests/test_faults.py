"""Nothing lost under faults: real Redis, SeaweedFS, API (gunicorn) and Celery workers, killed mid-job.

Each scenario runs against a private stack (``bench.fault_stack.FaultStack``) whose services can be
killed and restarted on the same ports and data. Workers load ``tests.worker_faults``: every
batch announces itself and lingers, and items misbehave by name. After every job the outcome
is audited (``bench.job_audit.audit_job``): exact counts, one final status per item, a result
object for each done item and no other, every result a whole JPEG of the input's size.

The broker-crash scenario runs on both brokers: Redis (the embedded default) and RabbitMQ
(a node of the stack's own). Counts are small so the file runs in CI; ``COLORIZE_SOAK=1`` runs every scenario bigger
(more kills, more items) and ``python bench/soak.py`` runs the 10,000-image soak.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import redis

from bench.fault_stack import FaultStack
from bench.job_audit import audit_job, jpeg_problem
from bench.jpeg_archive import small_jpegs, zip_archive
from bench.patient_client import PatientClient
from bench.soak import FAULT_KINDS, run_soak, soak_settings
from cli.embedded_rabbitmq import rabbitmq_available
from shared.errors import ColorizeError
from shared.queue.broker_queues import broker_queues
from shared.queue.contract import QUEUE, WEBHOOK_QUEUE
from shared.settings import Settings
from shared.storage.object_keys import job_prefix, result_key
from tests.fault_marks import (
    DECODER_CRASH_MARK,
    HANG_MARK,
    HOLD_S,
    MODEL_ERROR_MARK,
    POISON_MARK,
    SAVED_CRASH_MARK,
    chunks_key,
)
from tests.integration_fixtures import TEST_MODEL

pytestmark = pytest.mark.integration

SOAK = os.environ.get("COLORIZE_SOAK") == "1"
SIDE = 24
TENANT = "local"
JOB_TIMEOUT_S = 600 if SOAK else 90


def fault_settings(models_dir: Path) -> Settings:
    return Settings(s3_bucket="colorize-faults").with_overrides(
        models_dir=models_dir,
        model=TEST_MODEL,
        device="cpu",
        engine_threads=1,
        worker_concurrency=1,
        batch_size=2,
        chunk_size=2,
        task_soft_time_limit_s=3,
        task_time_limit_s=4,
        visibility_timeout_s=5,
        item_max_attempts=2,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory, test_models_dir: Path):
    with FaultStack(
        tmp_path_factory.mktemp("faults"), fault_settings(test_models_dir), worker_modules=("tests.worker_faults",)
    ) as s:
        s.start_api()
        yield s


@pytest.fixture(scope="module")
def rabbit_stack(tmp_path_factory, test_models_dir: Path):
    """A stack of its own whose tasks go through RabbitMQ (job state in its Redis)."""
    reason = rabbitmq_available()
    if reason:
        pytest.skip(reason)
    with FaultStack(
        tmp_path_factory.mktemp("faults-rabbitmq"),
        fault_settings(test_models_dir),
        worker_modules=("tests.worker_faults",),
        broker="rabbitmq",
    ) as s:
        s.start_api()
        yield s
        s.stop_workers()


@pytest.fixture
def fresh(stack: FaultStack):
    """An empty Redis database for the test and no workers left behind afterwards."""
    stack.redis_client().flushdb()
    yield stack
    stack.stop_workers()


@pytest.fixture
def client(stack: FaultStack) -> PatientClient:
    return PatientClient(stack.api.url, give_up_s=60)


def submit(client: PatientClient, count: int, names=None, seed: int = 0) -> str:
    names = names or [f"frames/{i:04d}.jpg" for i in range(count)]
    archive = zip_archive(zip(names, small_jpegs(len(names), SIDE, seed)))
    return client.submit("batch.zip", archive)["id"]


def finished_items(stack: FaultStack, job_id: str) -> dict[int, str]:
    jobs = stack.job_store()
    raw = jobs.redis.hgetall(jobs.keys.job(job_id).statuses)
    return {int(k): v.decode() for k, v in raw.items()}


def wait_for_progress(stack: FaultStack, job_id: str, finished: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(finished_items(stack, job_id)) < finished:
        assert time.monotonic() < deadline, f"job {job_id} made no progress"
        time.sleep(0.05)


def fresh_chunk(stack: FaultStack, job_id: str, timeout_s: float = 30) -> dict:
    """An announced batch of ``job_id`` whose worker holds it right now (it lingers HOLD_S)."""
    client = stack.redis_client()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        popped = client.blpop([chunks_key(stack.settings)], timeout=1)
        if popped is None:
            continue
        record = json.loads(popped[1])
        live = {w.pid for w in stack.live_workers()}
        if record["job"] == job_id and record["worker_pid"] in live and time.time() - record["at"] < HOLD_S / 2:
            return record
    raise AssertionError(f"no worker picked up a chunk of job {job_id}")


def assert_all_done(audit, total: int) -> None:
    assert audit.ok, audit.problems
    assert (audit.status, audit.total, audit.done, audit.failed) == ("succeeded", total, total, 0)
    assert audit.result_objects == total


# --- 1. workers killed mid-chunk ------------------------------------------------------------


def test_workers_killed_mid_chunk_repeatedly_lose_and_duplicate_nothing(fresh: FaultStack, client) -> None:
    kills = 10 if SOAK else 3
    n = 40 * (4 if SOAK else 1)
    # Each kill costs the items in hand one attempt; allow them all so every item must succeed.
    settings = fresh.settings.with_overrides(item_max_attempts=kills + 1)
    fresh.start_workers(2, settings)
    job_id = submit(client, n)
    held: list[dict] = []
    for _ in range(kills):
        record = fresh_chunk(fresh, job_id)
        (victim,) = [w for w in fresh.live_workers() if w.pid == record["worker_pid"]]
        fresh.kill_worker(victim)  # the whole worker, while it holds the batch unacknowledged
        held.append(record)

    job = client.wait_for_end(job_id, JOB_TIMEOUT_S)
    assert job["counts"] == {"total": n, "done": n, "failed": 0, "pending": 0}
    assert_all_done(audit_job(fresh.settings, job_id, n, (SIDE, SIDE)), n)
    attempts = fresh.job_store().attempts(job_id, range(n))
    for record in held:
        for index in record["indices"]:
            assert attempts[index] >= 2, f"item {index} was in hand at a kill but never redone"


# --- 2. Redis crash -------------------------------------------------------------------------


def test_redis_crash_mid_job_keeps_state_and_the_job_completes(fresh: FaultStack, client) -> None:
    crashes = 5 if SOAK else 1
    n = 30 * (3 if SOAK else 1)
    # Fewer chunks than pool processes: a worker polls the broker for more while it holds an
    # unacknowledged chunk, the state in which a lost connection used to kill the whole worker.
    # Time limits well above a chunk's time even when it waits out the outage: a limit that
    # strikes while the worker is busy reconnecting is another fault, not this test's.
    settings = fresh.settings.with_overrides(
        chunk_size=6, batch_size=3, task_soft_time_limit_s=10, task_time_limit_s=12, visibility_timeout_s=15
    )
    fresh.start_workers(2, settings, concurrency=3)
    job_id = submit(client, n)
    for crash in range(crashes):
        wait_for_progress(fresh, job_id, (crash + 1) * n // (crashes + 3))
        before = finished_items(fresh, job_id)
        fresh.crash_redis(down_s=1.5)
        after = finished_items(fresh, job_id)
        # Every acknowledged write survived the SIGKILL (the append-only file had it).
        assert {i: s for i, s in after.items() if i in before} == before

    job = client.wait_for_end(job_id, JOB_TIMEOUT_S)
    assert_all_done(audit_job(fresh.settings, job_id, n, (SIDE, SIDE)), n)
    assert job["counts"]["done"] == n
    # Workers reconnected rather than dying with the connection, and the API never failed.
    assert all(w.alive for w in fresh.workers), [w.log_path for w in fresh.workers if not w.alive]
    assert 500 not in client.statuses


def test_rabbitmq_crash_mid_job_loses_no_task_and_the_job_completes(rabbit_stack: FaultStack) -> None:
    crashes = 3 if SOAK else 1
    n = 30 * (3 if SOAK else 1)
    stack = rabbit_stack
    # As for Redis: fewer chunks than pool processes, time limits above a chunk that waits out
    # the outage (a node takes seconds to start again).
    settings = stack.settings.with_overrides(
        chunk_size=6, batch_size=3, task_soft_time_limit_s=20, task_time_limit_s=25, visibility_timeout_s=30
    )
    stack.start_workers(2, settings, concurrency=3)
    client = PatientClient(stack.api.url, give_up_s=60)
    job_id = submit(client, n)
    for crash in range(crashes):
        wait_for_progress(stack, job_id, (crash + 1) * n // (crashes + 3))
        before = finished_items(stack, job_id)
        stack.crash_rabbitmq(down_s=1.5)
        # Job state lives in Redis, which the crash did not touch.
        assert {i: s for i, s in finished_items(stack, job_id).items() if i in before} == before

    job = client.wait_for_end(job_id, JOB_TIMEOUT_S)
    assert_all_done(audit_job(stack.settings, job_id, n, (SIDE, SIDE)), n)
    assert job["counts"]["done"] == n
    # Workers reconnected rather than dying with the connection, and the API never failed.
    assert all(w.alive for w in stack.workers), [w.log_path for w in stack.workers if not w.alive]
    assert 500 not in client.statuses
    logs = "".join(w.log_path.read_text(errors="replace") for w in stack.workers)
    assert "Connection to broker lost" in logs  # the crash was met, and waited out
    # Deliveries whose acknowledgement the crash lost come again: each finds its items ended,
    # and the queues drain without changing the outcome.
    queues = broker_queues(stack.settings)
    deadline = time.monotonic() + 60
    while queues.waiting(QUEUE) or queues.waiting(WEBHOOK_QUEUE):
        assert time.monotonic() < deadline, "the queues did not drain"
        time.sleep(0.2)
    assert_all_done(audit_job(stack.settings, job_id, n, (SIDE, SIDE)), n)


# --- 3. storage outage ----------------------------------------------------------------------


class ResultWatcher(threading.Thread):
    """Reads results while the job runs: each one visible must be a whole JPEG, and every
    item marked done must have one. Storage calls made while it is down are skipped."""

    def __init__(self, stack: FaultStack, job_id: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.job_id = stack, job_id
        self.problems: list[str] = []
        self.checked: set[str] = set()
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        storage = self.stack.storage()
        prefix = job_prefix(TENANT, self.job_id) + "results/"
        while not self.stopping.is_set():
            try:
                done = {i for i, s in finished_items(self.stack, self.job_id).items() if s == "done"}
                keys = set(storage.iter_keys(prefix))
                for index in done:
                    if result_key(TENANT, self.job_id, index) not in keys:
                        self.problems.append(f"item {index} is done without a result object")
                for key in sorted(keys - self.checked):
                    problem = jpeg_problem(storage.get_bytes(key), (SIDE, SIDE))
                    if problem:
                        self.problems.append(f"{key}: {problem}")
                    self.checked.add(key)
            except (ColorizeError, redis.RedisError) as exc:
                self.errors.append(repr(exc))  # storage is down right now
            self.stopping.wait(0.05)


def test_storage_outage_mid_job_retries_and_never_shows_a_partial_result(fresh: FaultStack, client) -> None:
    outages = 4 if SOAK else 1
    n = 30 * (3 if SOAK else 1)
    # Time limits far above an outage: storage calls wait out its retries inside the chunk.
    fresh.start_workers(
        2, fresh.settings.with_overrides(task_soft_time_limit_s=15, task_time_limit_s=20, visibility_timeout_s=25)
    )
    job_id = submit(client, n)
    watcher = ResultWatcher(fresh, job_id)
    watcher.start()
    for outage in range(outages):
        wait_for_progress(fresh, job_id, (outage + 1) * n // (outages + 3))
        fresh.restart_s3(down_s=2.0)

    job = client.wait_for_end(job_id, JOB_TIMEOUT_S)
    deadline = time.monotonic() + 30
    while len(watcher.checked) < n and time.monotonic() < deadline:
        time.sleep(0.1)  # let it read the last results
    watcher.stopping.set()
    watcher.join()
    assert_all_done(audit_job(fresh.settings, job_id, n, (SIDE, SIDE)), n)
    assert job["counts"]["done"] == n
    assert watcher.problems == []
    assert len(watcher.checked) == n, watcher.errors[-5:]
    logs = "".join(w.log_path.read_text(errors="replace") for w in fresh.workers)
    assert "ServiceUnavailable" in logs and "retrying" in logs  # the outage was met, and waited out


# --- 4. API restart -------------------------------------------------------------------------


def test_api_restart_while_clients_poll_loses_no_job(fresh: FaultStack) -> None:
    restarts = 5 if SOAK else 1
    fresh.start_workers(2)
    submitter = PatientClient(fresh.api.url)
    jobs = [submit(submitter, 8, seed=k) for k in range(3)]
    outcomes: dict[str, dict] = {}
    pollers: list[PatientClient] = []

    def poll(job_id: str) -> None:
        client = PatientClient(fresh.api.url, give_up_s=60)
        pollers.append(client)
        outcomes[job_id] = client.wait_for_end(job_id, JOB_TIMEOUT_S, poll_s=0.05)

    threads = [threading.Thread(target=poll, args=(job_id,)) for job_id in jobs]
    for thread in threads:
        thread.start()
    late: list[str] = []
    for restart in range(restarts):
        time.sleep(0.5)
        fresh.api.kill()
        # Submitted while the API is down: refused connections are retried until it is back.
        arriving = threading.Thread(target=lambda: late.append(submit(PatientClient(fresh.api.url), 8, seed=9)))
        arriving.start()
        time.sleep(1.0)
        fresh.start_api()
        arriving.join()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == sorted(jobs)
    assert {job["status"] for job in outcomes.values()} == {"succeeded"}
    assert sum(p.outages for p in pollers) > 0, "no poll met the restart"
    assert all(500 not in p.statuses for p in pollers)
    for job_id in late:
        assert submitter.wait_for_end(job_id, JOB_TIMEOUT_S)["status"] == "succeeded"
    for job_id in jobs + late:
        assert_all_done(audit_job(fresh.settings, job_id, 8, (SIDE, SIDE)), 8)
    assert len(set(jobs + late)) == len(jobs) + restarts


# --- 5. poison items ------------------------------------------------------------------------


def test_poison_items_fail_after_bounded_attempts_without_blocking_their_chunks(fresh: FaultStack, client) -> None:
    # A soft limit above what the hooks' lingering costs a chunk (it would count against the
    # neighbours too); the hang blocks it anyway, so the hard limit ends each of its attempts.
    settings = fresh.settings.with_overrides(
        chunk_size=4, batch_size=2, task_soft_time_limit_s=5, task_time_limit_s=6, visibility_timeout_s=8
    )
    fresh.start_workers(2, settings)
    names = [
        "a.jpg",
        f"{POISON_MARK}.jpg",
        "b.jpg",
        f"{DECODER_CRASH_MARK}.jpg",
        "c.jpg",
        f"{MODEL_ERROR_MARK}.jpg",
        "d.jpg",
        f"{HANG_MARK}.jpg",
        "e.jpg",
        f"{SAVED_CRASH_MARK}.jpg",
    ]
    started = time.monotonic()
    job_id = submit(client, len(names), names)
    job = client.wait_for_end(job_id, JOB_TIMEOUT_S)
    took = time.monotonic() - started

    marks = (POISON_MARK, DECODER_CRASH_MARK, MODEL_ERROR_MARK, HANG_MARK, SAVED_CRASH_MARK)
    good = [i for i, name in enumerate(names) if not any(mark in name for mark in marks)]
    audit = audit_job(fresh.settings, job_id, len(names), (SIDE, SIDE), allowed_failures={"processing_failed"})
    assert audit.ok, audit.problems
    assert (job["status"], job["counts"]["done"], job["counts"]["failed"]) == ("partially_succeeded", 5, 5)
    _, items = client.json("GET", f"/v1/jobs/{job_id}/items")
    by_name = {item["path"]: item for item in items["items"]}
    assert {by_name[names[i]]["status"] for i in good} == {"done"}
    attempts = dict(zip(names, fresh.job_store().attempts(job_id, range(len(names)))))
    limit = settings.item_max_attempts
    # Crashes and hangs use up the item's own attempts, then it fails; the last attempt is the
    # one that finds none left. The audit saw no result left behind by the one that crashed
    # after storing it.
    for mark in (POISON_MARK, DECODER_CRASH_MARK, HANG_MARK, SAVED_CRASH_MARK):
        item = by_name[f"{mark}.jpg"]
        assert item["status"] == "failed" and item["error"]["code"] == "processing_failed", item
        assert "crashed or timed out" in item["error"]["message"]
        assert attempts[f"{mark}.jpg"] == limit + 1
    # An error the model raises fails the item at once, with its reason.
    model_error = by_name[f"{MODEL_ERROR_MARK}.jpg"]
    assert model_error["error"] == {"code": "processing_failed", "message": "the model could not process this image"}
    assert attempts[f"{MODEL_ERROR_MARK}.jpg"] == 1
    # Their neighbours ran at most twice: once beside the poison, once alone.
    assert all(attempts[names[i]] <= 2 for i in good), attempts
    # Bounded: three crashed attempts of each, the hang's cut at the hard time limit each time.
    assert took < 3 * (settings.task_time_limit_s + settings.visibility_timeout_s) + 30


# --- 6. soak --------------------------------------------------------------------------------


def test_soak_with_random_kills_of_every_kind(fresh: FaultStack) -> None:
    # Enough that the job outlasts its four faults and their recoveries: while a killed worker
    # restarts (seconds), the other one finishes hundreds of these small images.
    images = 2000 if SOAK else 1000
    settings = soak_settings(fresh.settings, fresh.settings.models_dir, TEST_MODEL).with_overrides(
        chunk_size=4, batch_size=2
    )
    report = run_soak(
        fresh,
        images,
        workers=2,
        kills_per_kind=3 if SOAK else 1,
        side=SIDE,
        timeout_s=JOB_TIMEOUT_S * 2,
        worker_settings=settings,
        log=lambda line: None,
    )
    print("\n".join(report.lines()))
    assert report.audit.ok, report.audit.problems
    assert report.audit.total == images and report.audit.done + report.audit.failed == images
    assert report.audit.result_objects == report.audit.done
    assert report.kills == {kind: 3 if SOAK else 1 for kind in FAULT_KINDS}
    assert all(f.progress < 1.0 for f in report.faults)
    assert report.client_retries > 0 and 500 not in report.client_statuses  # polls met the outages
