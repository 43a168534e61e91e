"""A tenant's jobs newest first in a real Redis: cursor paging, filters, tenants apart, deletion."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequest
from shared.ids import new_id
from shared.jobs.listing import MAX_EXAMINED, Cursor, JobFilter, JobListing
from shared.jobs.records import JobStatus
from shared.jobs.store import JobStore
from shared.jobs.upkeep import PurgeIndex

pytestmark = pytest.mark.integration


@pytest.fixture
def listing(redis_client, store, namespace) -> JobListing:
    return JobListing(redis_client, store, namespace=namespace)


def make_job(store: JobStore, tenant: str = "acme") -> str:
    return store.create_job(
        tenant=tenant, model="test-tiny", temperature=None, source_kind="zip", source_key="src", job_id=new_id()
    ).id


def every_page(listing: JobListing, tenant: str, limit: int, where: JobFilter | None = None) -> list[list[str]]:
    where = where or JobFilter()
    pages, cursor = [], None
    while True:
        page = listing.page(tenant, limit, Cursor.decode(cursor.encode()) if cursor else None, where)
        pages.append([job.id for job in page.jobs])
        if page.next is None:
            return pages
        cursor = page.next


def test_newest_first_in_pages_that_cover_every_job_once(store, listing, clock) -> None:
    created = []
    for _ in range(7):
        clock.now += 1
        created.append(make_job(store))
    assert every_page(listing, "acme", 3) == [created[:3:-1], created[3:0:-1], created[:1]]
    assert listing.page("acme", 7).next is None  # exactly one page: no empty page after it


def test_jobs_of_one_instant_are_paged_without_loss_or_repeat(store, listing) -> None:
    created = {make_job(store) for _ in range(5)}  # the clock stands still
    pages = every_page(listing, "acme", 2)
    listed = [job_id for page in pages for job_id in page]
    assert sorted(listed) == sorted(created) and [len(page) for page in pages] == [2, 2, 1]


def test_jobs_created_meanwhile_do_not_shift_later_pages(store, listing, clock) -> None:
    older = []
    for _ in range(4):
        clock.now += 1
        older.append(make_job(store))
    first = listing.page("acme", 2)
    clock.now += 1
    make_job(store)
    rest = listing.page("acme", 2, first.next)
    assert [job.id for job in rest.jobs] == older[1::-1]


def test_filters_by_status_and_creation_time(store, listing, clock) -> None:
    start = clock.now
    created = []
    for _ in range(6):
        clock.now += 10
        created.append(make_job(store))
    for job_id in created[::2]:
        store.cancel(job_id)
    canceled = JobFilter(status=JobStatus.CANCELED)
    assert every_page(listing, "acme", 2, canceled) == [[created[4], created[2]], [created[0]]]
    window = JobFilter(created_after=start + 20, created_before=start + 50)  # both ends excluded
    assert every_page(listing, "acme", 10, window) == [[created[3], created[2]]]
    both = JobFilter(status=JobStatus.QUEUED, created_after=start + 5)
    assert every_page(listing, "acme", 1, both) == [[created[5]], [created[3]], [created[1]]]


def test_a_filter_that_matches_little_answers_short_pages_with_a_cursor(store, listing, clock) -> None:
    for _ in range(MAX_EXAMINED + 5):
        clock.now += 0.001
        make_job(store)
    page = listing.page("acme", 10, where=JobFilter(status=JobStatus.CANCELED))
    assert page.jobs == [] and page.next is not None
    assert listing.page("acme", 10, page.next, JobFilter(status=JobStatus.CANCELED)).next is None


def test_tenants_see_only_their_own_jobs(store, listing) -> None:
    mine, theirs = make_job(store, "acme"), make_job(store, "globex")
    assert [job.id for job in listing.page("acme", 10).jobs] == [mine]
    assert [job.id for job in listing.page("globex", 10).jobs] == [theirs]
    assert listing.page("initech", 10).jobs == []


def test_deleted_and_expired_jobs_leave_the_listing(store, listing, redis_client, namespace, clock) -> None:
    kept, deleted, expired = make_job(store), make_job(store), make_job(store)
    job = store.get(deleted)
    assert store.delete(job, purge_again_at=clock.now + 30) is True
    assert store.find(deleted) is None and store.delete(job, purge_again_at=clock.now + 30) is False
    redis_client.delete(store.keys.job(expired).record)  # as Redis expires it, before the purge runs
    assert [job.id for job in listing.page("acme", 10).jobs] == [kept]
    assert redis_client.zrange(store.keys.tenant_jobs("acme"), 0, -1) == [kept.encode()]
    # The purge comes back for what a task still in hand stores after the deletion.
    purges = PurgeIndex(redis_client, clock=clock, namespace=namespace)
    assert deleted not in [target.id for target in purges.lease_due()]
    clock.now += 31
    assert deleted in [target.id for target in purges.lease_due()]


@pytest.mark.parametrize("token", ["", "x", "bm90LWEtY3Vyc29y", Cursor(float("nan"), "j").encode(), "%%%"])
def test_foreign_cursors_are_refused(token) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Cursor.decode(token)
    assert caught.value.details == {"field": "cursor"}
