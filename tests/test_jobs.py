"""Job state in a real Redis: transitions, atomic counting, finishing exactly once, attempts, expiry,
uploads and the upkeep indexes."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from shared.errors import Conflict, CorruptArchive, CorruptImage, NotFound, UnsafeEntry
from shared.ids import new_id
from shared.jobs.records import TERMINAL_STATUSES, TRANSITIONS, ItemResult, Job, JobStatus, NewItem
from shared.jobs.store import JobStore
from shared.jobs.upkeep import PurgeIndex, PurgeTarget, StallWatch, WorkerHeartbeats
from shared.jobs.uploads import UploadStore
from tests.job_state_fixtures import STORE_SETTINGS, TTL_S, Clock


@pytest.fixture
def uploads(redis_client, clock, namespace) -> UploadStore:
    return UploadStore(redis_client, STORE_SETTINGS, clock=clock, namespace=namespace)


@pytest.fixture
def purges(redis_client, clock, namespace) -> PurgeIndex:
    return PurgeIndex(redis_client, clock=clock, namespace=namespace)


@pytest.fixture
def stalls(redis_client, clock, namespace) -> StallWatch:
    return StallWatch(redis_client, STORE_SETTINGS.stall_after_s, clock=clock, namespace=namespace)


def make_job(store: JobStore, tenant: str = "local") -> str:
    job_id = new_id()
    store.create_job(
        tenant=tenant,
        model="test-tiny",
        temperature=None,
        source_kind="zip",
        source_key=f"src/{job_id}",
        source_filename="photos.zip",
        job_id=job_id,
    )
    return job_id


def items(*indices: int, error=None) -> list[NewItem]:
    return [
        NewItem(index=i, path=f"dir/{i}.png", output_path=f"dir/{i}.jpg", size=100 + i, error=error) for i in indices
    ]


def complete(store: JobStore, job_id: str, *indices: int):
    return store.record(job_id, [ItemResult.done(i) for i in indices])


def fail(store: JobStore, job_id: str, index: int, error):
    return store.record(job_id, [ItemResult.failed(index, error)])


# --- transitions ----------------------------------------------------------------------------


def test_terminal_statuses_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {s for s in JobStatus if not TRANSITIONS[s]} == TERMINAL_STATUSES


@pytest.mark.integration
def test_redis_enforces_the_transitions(store: JobStore) -> None:
    job_id = make_job(store)
    assert store.status(job_id) == JobStatus.QUEUED
    assert store.mark_running(job_id) is True
    assert store.mark_running(job_id) is False  # running -> running is not a transition
    store.cancel(job_id)
    assert store.status(job_id) == JobStatus.CANCELED
    assert store.mark_running(job_id) is False
    with pytest.raises(Conflict):
        store.cancel(job_id)
    assert store.status(job_id) == JobStatus.CANCELED
    assert store.status("nope") is None


@pytest.mark.integration
def test_new_job_record(store: JobStore, clock: Clock) -> None:
    job_id = make_job(store)
    job = store.get(job_id)
    assert (job.status, job.total, job.done, job.failed, job.expanded) == (JobStatus.QUEUED, 0, 0, 0, False)
    assert job.created_at == clock.now and job.started_at is None and job.finished_at is None
    assert job.expires_at == clock.now + TTL_S
    assert job.source_filename == "photos.zip" and job.error is None


@pytest.mark.integration
def test_unknown_and_foreign_jobs_are_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound):
        store.get("nope")
    job_id = make_job(store, tenant="alice")
    with pytest.raises(NotFound):
        store.get(job_id, tenant="bob")
    assert store.get(job_id, tenant="alice").id == job_id
    with pytest.raises(NotFound):
        store.cancel("nope")


# --- counting and finishing -----------------------------------------------------------------


@pytest.mark.integration
def test_item_completion_counts_once(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    assert store.add_items(job_id, items(0, 1, 2)) == 3
    assert store.add_items(job_id, items(1, 2, 3)) == 1  # redelivered expansion re-registers
    assert store.get(job_id).total == 4
    first = complete(store, job_id, 0)
    assert [r.index for r in first.counted] == [0] and not first.finished
    assert complete(store, job_id, 0).counted == []
    assert fail(store, job_id, 0, CorruptImage("late")).counted == []
    assert complete(store, job_id, 99).counted == []  # never registered
    job = store.get(job_id)
    assert (job.done, job.failed, job.pending) == (1, 0, 3)
    assert store.unfinished(job_id, [0, 1, 2, 3, 99]) == [1, 2, 3]


@pytest.mark.integration
def test_job_finishes_only_after_expansion_ends(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0, 1))
    assert not complete(store, job_id, 0).finished
    assert not complete(store, job_id, 1).finished  # more entries may still come
    assert store.status(job_id) == JobStatus.RUNNING
    assert store.end_expansion(job_id) is True
    assert store.end_expansion(job_id) is False
    job = store.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0 and job.finished_at is not None


@pytest.mark.parametrize(
    "done, failed, archive_error, expected",
    [
        (3, 0, None, JobStatus.SUCCEEDED),
        (2, 1, None, JobStatus.PARTIALLY_SUCCEEDED),
        (3, 0, CorruptArchive("truncated"), JobStatus.PARTIALLY_SUCCEEDED),
        (0, 3, None, JobStatus.FAILED),
        (0, 0, CorruptArchive("truncated"), JobStatus.FAILED),
    ],
)
@pytest.mark.integration
def test_final_status_follows_counts(store: JobStore, done, failed, archive_error, expected) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(*range(done + failed)))
    store.record(
        job_id,
        [ItemResult.done(i) for i in range(done)]
        + [ItemResult.failed(i, CorruptImage("bad pixels")) for i in range(done, done + failed)],
    )
    assert store.end_expansion(job_id, archive_error) is True
    job = store.get(job_id)
    assert job.status == expected
    assert job.error == ({"code": "corrupt_archive", "message": "truncated"} if archive_error else None)


@pytest.mark.integration
def test_items_failed_at_registration_count_as_failed(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0))
    store.add_items(job_id, items(1, error=UnsafeEntry("path leaves the archive")))
    complete(store, job_id, 0)
    assert store.end_expansion(job_id)
    job = store.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.PARTIALLY_SUCCEEDED, 1, 1)
    listed = store.items(job_id, 0, 10)
    assert [i.status for i in listed] == ["done", "failed"]
    assert listed[1].error == {"code": "unsafe_entry", "message": "path leaves the archive"}
    assert (listed[0].path, listed[0].output_path, listed[0].size) == ("dir/0.png", "dir/0.jpg", 100)


@pytest.mark.integration
def test_concurrent_completions_finish_exactly_once(store: JobStore, redis_client) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    n = 60
    store.add_items(job_id, items(*range(n)))
    store.end_expansion(job_id)
    outcomes = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        # Every item is reported by three threads, like a chunk redelivered twice, in batches.
        order = [(i + offset) % n for i in range(n)]
        for start in range(0, n, 4):
            outcome = complete(store, job_id, *order[start : start + 4])
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.index for o in outcomes for r in o.counted) == list(range(n))
    assert sum(o.finished for o in outcomes) == 1
    job = store.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.SUCCEEDED, n, 0)


class Heard:
    """A listener that notes each event (``fails``: and then raises, as a lost webhook would)."""

    def __init__(self, fails: bool = False) -> None:
        self.events: list[tuple[str, JobStatus, tuple[int, ...]]] = []
        self.fails = fails

    def _heard(self, event: str, job: Job, indices: tuple[int, ...] = ()) -> None:
        self.events.append((event, job.status, indices))
        if self.fails:
            raise ConnectionError(f"{event} was lost")

    def job_started(self, job: Job) -> None:
        self._heard("job_started", job)

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        self._heard("items_finished", job, tuple(r.index for r in results))

    def job_finished(self, job: Job) -> None:
        self._heard("job_finished", job)


@pytest.mark.integration
def test_listeners_hear_each_committed_change_once_and_a_failing_one_stops_nothing(
    redis_client, clock: Clock, namespace: str
) -> None:
    failing, heard = Heard(fails=True), Heard()
    store = JobStore(redis_client, STORE_SETTINGS, clock=clock, namespace=namespace, listeners=(failing, heard))
    job_id = make_job(store)
    store.add_items(job_id, items(0, 1, 2))
    store.end_expansion(job_id)
    store.mark_running(job_id)
    store.mark_running(job_id)  # already running: no second start
    complete(store, job_id, 0, 1)
    complete(store, job_id, 1)  # ended before: heard once only
    fail(store, job_id, 2, CorruptImage("bad pixels"))
    expected = [
        ("job_started", JobStatus.RUNNING, ()),
        ("items_finished", JobStatus.RUNNING, (0, 1)),
        ("items_finished", JobStatus.PARTIALLY_SUCCEEDED, (2,)),
        ("job_finished", JobStatus.PARTIALLY_SUCCEEDED, ()),
    ]
    assert heard.events == expected
    assert failing.events == expected
    job = store.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.PARTIALLY_SUCCEEDED, 2, 1)


@pytest.mark.integration
def test_cancel_keeps_finished_items_and_shows_the_rest_canceled(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0, 1, 2))
    complete(store, job_id, 0)
    job = store.cancel(job_id)
    assert job.status == JobStatus.CANCELED and job.finished_at is not None
    recorded = store.record(job_id, [ItemResult.done(1)], begin=[2])  # a chunk already in flight
    assert [r.index for r in recorded.counted] == [1] and recorded.started == []  # nothing more begins
    assert recorded.job.status == JobStatus.CANCELED
    assert [i.status for i in store.items(job_id, 0, 10)] == ["done", "done", "canceled"]
    assert [i.index for i in store.done_items(job_id)] == [0, 1]
    assert store.end_expansion(job_id) is False


@pytest.mark.integration
def test_item_paging(store: JobStore) -> None:
    job_id = make_job(store)
    store.add_items(job_id, items(*range(5)))
    assert [i.index for i in store.items(job_id, 1, 2)] == [1, 2]
    assert [i.index for i in store.items(job_id, 4, 10)] == [4]
    assert store.items(job_id, 5, 10) == []
    with pytest.raises(NotFound):
        store.item(job_id, 5)
    with pytest.raises(NotFound):
        store.item(job_id, -1)


@pytest.mark.integration
def test_attempts_are_counted_per_item(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0, 1, 2))
    for _ in range(2):
        assert store.record(job_id, [], begin=[0]).started == [0]
    assert store.record(job_id, [], begin=[0, 1, 9]).started == [0, 1]  # 9 is not an item
    assert store.attempts(job_id, [0, 1, 2]) == [3, 1, 0]
    store.forgive_attempts(job_id, [0, 1])  # an outage, not the items, ended those attempts
    assert store.attempts(job_id, [0, 1, 2]) == [2, 0, 0]
    complete(store, job_id, 0)
    store.forgive_attempts(job_id, [0, 2])  # finished, or never begun: nothing to give back
    assert store.attempts(job_id, [0, 1, 2]) == [2, 0, 0]


@pytest.mark.integration
def test_an_item_out_of_attempts_fails_instead_of_beginning(store: JobStore) -> None:
    limit = store.settings.item_max_attempts
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0, 1))
    store.end_expansion(job_id)
    for _ in range(limit):
        store.record(job_id, [], begin=[0])
    recorded = complete(store, job_id, 1)
    assert not recorded.finished
    recorded = store.record(job_id, [], begin=[0])
    assert (recorded.started, recorded.exhausted, recorded.finished) == ([], [0], True)
    (result,) = recorded.counted
    assert (result.index, result.status, result.error.code) == (0, "failed", "processing_failed")
    item = store.item(job_id, 0)
    assert item.error == {"code": "processing_failed", "message": f"processing crashed or timed out {limit} times"}
    assert store.attempts(job_id, [0]) == [limit + 1]
    assert recorded.job.status == JobStatus.PARTIALLY_SUCCEEDED


@pytest.mark.integration
def test_a_chunk_begins_with_its_unfinished_items_sorted_by_attempts(store: JobStore) -> None:
    job_id = make_job(store)
    store.add_items(job_id, items(*range(6)))
    store.record(job_id, [], begin=[3])  # in hand when a worker died
    complete(store, job_id, 1)
    start = store.begin_chunk(job_id, [0, 1, 2, 3, 4, 5, 7], begin=2)
    assert (start.fresh, start.retried) == ([0, 2, 4, 5], [3])
    assert start.job.status == JobStatus.RUNNING  # the first task of a job starts it
    assert store.attempts(job_id, range(6)) == [1, 0, 1, 1, 0, 0]  # the first batch is begun
    store.cancel(job_id)
    ended = store.begin_chunk(job_id, [4, 5], begin=2)
    assert ended.job.status == JobStatus.CANCELED and (ended.fresh, ended.retried) == ([], [])
    assert store.attempts(job_id, [4, 5]) == [0, 0]
    assert store.begin_chunk("nope", [0], begin=1).job is None


@pytest.mark.integration
def test_single_image_job_is_expanded_at_creation(store: JobStore) -> None:
    job = store.create_job(
        tenant="local",
        model="m",
        temperature=0.5,
        source_kind="image",
        source_key="k",
        source_filename="a.png",
        single_item=NewItem(0, "a.png", "a.jpg", 10),
    )
    assert (job.total, job.expanded, job.temperature, job.status) == (1, True, 0.5, JobStatus.QUEUED)
    store.mark_running(job.id)
    assert complete(store, job.id, 0).finished
    assert store.get(job.id).status == JobStatus.SUCCEEDED


# --- expiry ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_every_key_expires(store: JobStore, redis_client, clock: Clock) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.add_items(job_id, items(0, 1))
    store.record(job_id, [], begin=[0])
    complete(store, job_id, 0)
    fail(store, job_id, 1, CorruptImage("x"))
    store.end_expansion(job_id)
    keys = list(redis_client.scan_iter(match=store.keys.job(job_id).record + "*"))
    assert len(keys) == 5
    for key in keys:
        assert 0 < redis_client.ttl(key) <= TTL_S + 1


@pytest.mark.integration
def test_finished_jobs_are_purged_after_the_ttl(store: JobStore, purges: PurgeIndex, clock: Clock) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    clock.now += 100
    store.end_expansion(job_id)  # finishes (empty, failed): expiry renewed from now
    assert purges.lease_due() == []
    clock.now += TTL_S + 1
    (target,) = purges.lease_due()
    assert (target.kind, target.tenant, target.id) == ("job", "local", job_id)
    assert purges.lease_due() == []  # leased: a second purger does not get it
    clock.now += 301
    assert [t.id for t in purges.lease_due()] == [job_id]  # lease lapsed: retried
    purges.forget(target)
    clock.now += 10_000
    assert purges.lease_due() == []


def test_purge_target_parsing() -> None:
    target = PurgeTarget.parse("upload:local:abc:2~x:y")
    assert (target.kind, target.tenant, target.id, target.multipart_id) == ("upload", "local", "abc", "2~x:y")
    assert PurgeTarget.parse("upload:local:abc:").multipart_id is None
    assert PurgeTarget.parse("job:t:j").id == "j"


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.integration
def test_upload_is_claimed_once_and_only_when_complete(uploads: UploadStore) -> None:
    upload = uploads.create(tenant="local", filename="big.tar", size=10, key="uploads/x", multipart_id="m1")
    with pytest.raises(Conflict):
        uploads.claim(upload.id, "job-1")
    uploads.mark_complete(upload.id)
    uploads.claim(upload.id, "job-1")
    with pytest.raises(Conflict):
        uploads.claim(upload.id, "job-2")
    with pytest.raises(Conflict):
        uploads.mark_complete(upload.id)
    assert uploads.get(upload.id).job_id == "job-1"
    with pytest.raises(NotFound):
        uploads.get(upload.id, tenant="other")
    with pytest.raises(NotFound):
        uploads.claim("missing", "job-3")


@pytest.mark.integration
def test_jobs_that_stop_moving_are_leased_as_stalled_once(store: JobStore, stalls: StallWatch, clock: Clock) -> None:
    stall = store.settings.stall_after_s
    queued = make_job(store)
    moving = make_job(store)
    ended = make_job(store)
    store.mark_running(ended)
    store.add_items(ended, items(0))
    store.end_expansion(ended)
    complete(store, ended, 0)

    clock.now += stall - 1
    store.mark_running(moving)  # a task started: it moved
    assert stalls.lease_stalled() == []
    clock.now += 2
    assert stalls.lease_stalled() == [queued]
    assert stalls.lease_stalled() == []  # leased: another housekeeper does not get it
    clock.now += stall - 2
    store.add_items(moving, items(0, 1))
    complete(store, moving, 0)
    clock.now += 3
    assert stalls.lease_stalled() == [queued]  # still not moving once its lease ran out
    clock.now += stall
    assert sorted(stalls.lease_stalled()) == sorted([queued, moving])
    store.cancel(queued)
    store.end_expansion(moving)
    complete(store, moving, 1)
    clock.now += 10 * stall
    assert stalls.lease_stalled() == []  # ended jobs are never taken for stalled


@pytest.mark.integration
def test_worker_heartbeats(redis_client, clock: Clock, namespace: str) -> None:
    heartbeats = WorkerHeartbeats(redis_client, clock=clock, namespace=namespace)
    heartbeats.record("w1", stale_after_s=30)
    clock.now += 20
    heartbeats.record("w2", stale_after_s=30)
    assert sorted(heartbeats.live(30)) == ["w1", "w2"]
    clock.now += 15
    assert heartbeats.live(30) == ["w2"]
    heartbeats.forget("w2")
    assert heartbeats.live(30) == []


# --- purge of stored objects ----------------------------------------------------------------


@pytest.mark.integration
def test_purge_deletes_the_storage_of_expired_jobs_and_uploads(
    store: JobStore, uploads: UploadStore, purges: PurgeIndex, clock: Clock, storage, redis_client, namespace
) -> None:
    from shared.jobs.listing import JobListing
    from shared.storage.object_keys import input_object_key, input_object_name, job_prefix, result_key, upload_key
    from shared.tenancy.storage_quota import StoredBytes, job_owner, upload_owner
    from worker.housekeeping import purge_due

    stored = StoredBytes(redis_client, STORE_SETTINGS.quotas, namespace=namespace)
    listing = JobListing(redis_client, store, namespace=namespace)

    expired = make_job(store)
    storage.put_bytes(input_object_key("local", expired, input_object_name(0, 3)), b"in")
    storage.put_bytes(result_key("local", expired, 0), b"out")
    upload = uploads.create(tenant="local", filename="big.zip", size=10, key="unused", multipart_id=None)
    storage.put_bytes(upload_key("local", upload.id), b"uploaded")
    pending_upload_id = new_id()
    multipart_id = storage.create_multipart(upload_key("local", pending_upload_id))
    uploads.create(
        tenant="local",
        filename="half.zip",
        size=10,
        key="unused",
        multipart_id=multipart_id,
        upload_id=pending_upload_id,
    )
    clock.now += TTL_S / 2
    kept = make_job(store)
    storage.put_bytes(result_key("local", kept, 0), b"out")
    for owner, size in (
        (job_owner(expired), 5),
        (upload_owner(upload.id), 8),
        (upload_owner(pending_upload_id), 10),
        (job_owner(kept), 3),
    ):
        stored.add("local", owner, size)

    assert purge_due(purges, storage, stored, listing) == 0
    clock.now += TTL_S / 2 + 1
    assert purge_due(purges, storage, stored, listing) == 3  # the first job and both uploads
    assert [job.id for job in listing.page("local", 10).jobs] == [kept]  # the purged job is no longer listed
    assert list(storage.iter_keys(job_prefix("local", expired))) == []
    assert not storage.exists(upload_key("local", upload.id))
    assert list(storage.iter_keys(job_prefix("local", kept))) == [result_key("local", kept, 0)]
    assert stored.used("local") == 3  # only what the kept job stored still counts
    assert purge_due(purges, storage, stored, listing) == 0
