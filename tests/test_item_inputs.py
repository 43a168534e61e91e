"""Where items' bytes live between expansion and their chunk, and the lanes chunks take.

Expansion and chunks run in this process against the real Redis and SeaweedFS; what they
would publish is kept and run here in order, so every step can be looked at in between.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

import cv2
import numpy as np
import pytest

from shared.ids import new_id
from shared.jobs.bulk_lane import BulkLane
from shared.jobs.records import JobStatus
from shared.queue.contract import BULK_TURN_TASK, COLORIZE_TASK, QUEUE
from shared.settings import Settings
from shared.storage.object_keys import input_object_key, input_object_name, inputs_prefix, source_key
from tests.integration_fixtures import TEST_MODEL, with_own_keys
from worker.chunk_pipeline import ChunkRun
from worker.context import WorkerContext
from worker.expansion import Expander, ExpansionLease
from worker.scheduling import Lane, enqueue_chunks

TENANT = "local"

# Keys of their own (with_own_keys), which no worker reads: the tasks published here are run by the test.
pytestmark = pytest.mark.integration


class Published:
    """Stands in for the Celery app: keeps what would be published."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, tuple]] = []
        self.colorize_settings = Settings()  # Redis: lanes by priority in the one queue

    def send_task(self, name: str, args: tuple = (), queue: str | None = None, **options) -> None:
        self.tasks.append((name, tuple(args)))


def png(i: int, side: int = 24) -> bytes:
    ramp = np.linspace(20, 230, side + i, dtype=np.float32)[None, :].repeat(side, axis=0)
    return cv2.imencode(".png", ramp.astype(np.uint8))[1].tobytes()


def zipped(files: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, method in files:
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def tarred(files: list[tuple[str, bytes]], gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def inputs_settings(app_settings: Settings, storage) -> Settings:
    return with_own_keys(app_settings).with_overrides(chunk_size=4, batch_size=2)


@pytest.fixture
def ctx(inputs_settings: Settings) -> WorkerContext:
    context = WorkerContext(inputs_settings, Published())
    return context


def expand(ctx: WorkerContext, kind: str, data: bytes) -> str:
    job_id = new_id()
    key = source_key(TENANT, job_id)
    ctx.storage.put_bytes(key, data)
    ctx.jobs.create_job(
        tenant=TENANT, model=TEST_MODEL, temperature=None, source_kind=kind, source_key=key, job_id=job_id
    )
    ctx.jobs.mark_running(job_id)
    lease = ExpansionLease(ctx.redis, ctx.jobs.keys.job(job_id).expander)
    assert lease.acquire()
    Expander(ctx, ctx.jobs.get(job_id), lease).run()
    lease.release()
    return job_id


def run_next(ctx: WorkerContext) -> ChunkRun | None:
    """Run the first task published, as the worker's tasks would; None when none is left."""
    published = ctx.app.tasks
    if not published:
        return None
    name, args = published.pop(0)
    if name == COLORIZE_TASK:
        run = ChunkRun(ctx, args[0])
        run.run(args[1])
        return run
    assert name == BULK_TURN_TASK
    turn = new_id()
    claimed = ctx.bulk.claim(turn)
    run = ChunkRun(ctx, claimed.job_id, may_hand_over=True)
    run.run(claimed.indices)
    if run.handed_back:
        enqueue_chunks(ctx.app, ctx.bulk, run.job, [run.handed_back], Lane.BULK, first=True)
    ctx.bulk.release(turn)
    return run


def run_all(ctx: WorkerContext) -> None:
    while run_next(ctx) is not None:
        pass


def stored_inputs(ctx: WorkerContext, job_id: str) -> dict[str, int]:
    return {key: ctx.storage.size(key) for key in ctx.storage.iter_keys(inputs_prefix(TENANT, job_id))}


def statuses(ctx: WorkerContext, job_id: str) -> list[tuple[str, str | None]]:
    return [(item.status, (item.error or {}).get("code")) for item in ctx.jobs.items(job_id, 0, 100)]


# --- zip: read where the members lie -------------------------------------------------------------


def test_zip_members_are_read_from_the_source_by_range_one_get_per_batch(ctx: WorkerContext) -> None:
    methods = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA] * 2
    job_id = expand(ctx, "zip", zipped([(f"p{i}.png", png(i), method) for i, method in enumerate(methods)]))
    assert stored_inputs(ctx, job_id) == {}  # nothing stored per item

    gets: list[tuple[str, int, int]] = []
    get_range = ctx.storage.get_range

    def counted(key: str, start: int, length: int) -> bytes:
        gets.append((key, start, length))
        return get_range(key, start, length)

    ctx.storage.get_range = counted
    run_all(ctx)

    job = ctx.jobs.get(job_id)
    assert (job.status, job.done) == (JobStatus.SUCCEEDED, 8)
    # Four batches of two neighbouring members: one ranged GET of the source each.
    assert len(gets) == 4 and {key for key, _, _ in gets} == {source_key(TENANT, job_id)}
    assert ctx.redis.hlen(ctx.jobs.keys.job(job_id).inputs) == 0  # input records go as items end


def test_a_damaged_zip_member_fails_alone(ctx: WorkerContext) -> None:
    images = [png(i) for i in range(3)]
    archive = bytearray(zipped([(f"p{i}.png", data, zipfile.ZIP_STORED) for i, data in enumerate(images)]))
    middle = archive.find(images[1])
    archive[middle + 100] ^= 0xFF  # its CRC no longer matches
    job_id = expand(ctx, "zip", bytes(archive))
    run_all(ctx)
    assert statuses(ctx, job_id) == [("done", None), ("failed", "corrupt_archive"), ("done", None)]


# --- tar: checked, then one object per chunk -----------------------------------------------------


def test_tar_entries_that_are_not_images_are_refused_before_anything_is_stored(ctx: WorkerContext) -> None:
    zeros = b"\0" * (2 * 1024**2)
    images = [png(i) for i in range(2)]
    files = [
        ("a.jpg", zeros),
        ("p0.png", images[0]),
        ("b.jpg", zeros),
        ("c.jpg", zeros),
        ("p1.png", images[1]),
        ("d.jpg", zeros),
    ]
    job_id = expand(ctx, "tar.gz", tarred(files))

    # Only the two images were kept: well under 1 % of what the archive expands to.
    stored = stored_inputs(ctx, job_id)
    assert sum(stored.values()) == sum(len(data) for data in images) < 0.01 * 4 * len(zeros)
    assert [code for _, code in statuses(ctx, job_id)] == [
        "unsupported_format",
        None,
        "unsupported_format",
        "unsupported_format",
        None,
        "unsupported_format",
    ]
    run_all(ctx)
    job = ctx.jobs.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.PARTIALLY_SUCCEEDED, 2, 4)
    assert stored_inputs(ctx, job_id) == {}  # deleted once their items ended


def test_input_objects_go_once_their_items_end_and_a_redelivered_chunk_loses_nothing(ctx: WorkerContext) -> None:
    job_id = expand(ctx, "tar", tarred([(f"p{i}.png", png(i)) for i in range(6)], gz=False))
    first, second = (input_object_key(TENANT, job_id, input_object_name(*ends)) for ends in ((0, 3), (4, 5)))
    assert set(stored_inputs(ctx, job_id)) == {first, second}
    turns = list(ctx.app.tasks)
    assert turns == [(BULK_TURN_TASK, ())] * 2  # six items: the bulk lane, one turn per chunk

    run_next(ctx)  # the first chunk, items 0-3
    assert set(stored_inputs(ctx, job_id)) == {second}
    # Its message delivered again (its worker died before acknowledging it): every item has
    # ended, so nothing is read, counted or failed.
    before = ctx.jobs.get(job_id)
    ChunkRun(ctx, job_id).run([0, 1, 2, 3])
    assert ctx.jobs.get(job_id).done == before.done == 4

    run_all(ctx)
    job = ctx.jobs.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.SUCCEEDED, 6, 0)
    assert stored_inputs(ctx, job_id) == {}


# --- lanes -------------------------------------------------------------------------------------


def test_a_job_of_one_chunk_is_interactive_and_a_larger_one_bulk(ctx: WorkerContext) -> None:
    small = expand(ctx, "zip", zipped([(f"p{i}.png", png(i), zipfile.ZIP_STORED) for i in range(4)]))
    assert ctx.app.tasks == [(COLORIZE_TASK, (small, [0, 1, 2, 3]))]
    ctx.app.tasks.clear()
    large = expand(ctx, "zip", zipped([(f"p{i}.png", png(i), zipfile.ZIP_STORED) for i in range(5)]))
    assert ctx.app.tasks == [(BULK_TURN_TASK, ())] * 2
    assert ctx.bulk.waiting(large) == 2


def test_a_bulk_chunk_hands_its_process_over_to_waiting_interactive_work(ctx: WorkerContext) -> None:
    job_id = expand(ctx, "zip", zipped([(f"p{i}.png", png(i), zipfile.ZIP_STORED) for i in range(6)]))
    queue = ctx.settings.redis_key_prefix + QUEUE
    ctx.redis.rpush(queue, b"an interactive chunk")  # waits in the queue's first priority
    run = run_next(ctx)
    # The first batch ran; the second, begun with it, was handed back without an attempt.
    assert run.handed_back == [2, 3]
    assert ctx.jobs.attempts(job_id, range(4)) == [1, 1, 0, 0]
    assert [status for status, _ in statuses(ctx, job_id)[:4]] == ["done", "done", "pending", "pending"]
    ctx.redis.delete(queue)
    run_all(ctx)
    job = ctx.jobs.get(job_id)
    assert (job.status, job.done) == (JobStatus.SUCCEEDED, 6)
    assert ctx.jobs.attempts(job_id, range(6)) == [1] * 6


def test_tenants_then_their_jobs_take_turns_in_the_bulk_lane(ctx: WorkerContext) -> None:
    lane = BulkLane(ctx.redis, ttl_s=60, namespace=f"test-{new_id()}")
    lane.push("a", "a1", [[1], [2], [3]])
    lane.push("a", "a2", [[1], [2]])
    lane.push("b", "b1", [[1], [2], [3]])
    turns = [new_id() for _ in range(9)]
    order = [(c.job_id, c.indices[0]) for c in (lane.claim(turn) for turn in turns[:8])]
    assert order == [("a1", 1), ("b1", 1), ("a2", 1), ("b1", 2), ("a1", 2), ("b1", 3), ("a2", 2), ("a1", 3)]
    assert lane.claim(turns[8]) is None
    # A turn that runs again (redelivered, retried) gets the chunk it claimed; released, it is gone.
    assert lane.claim(turns[3]).indices == [2]
    lane.release(turns[3])
    lane.push("b", "b1", [[9]])
    lane.push("b", "b1", [[8]], first=True)  # handed back: next when the job's turn comes
    assert [lane.claim(turns[3]).indices, lane.claim(new_id()).indices] == [[8], [9]]
    lane.push("a", "a1", [[4]])
    lane.forget("a", "a1")
    assert lane.waiting("a1") == 0 and lane.claim(new_id()) is None
