"""Quotas and rate limits against real Redis and SeaweedFS: 429 with Retry-After for each,
refills, the daily image quota running out in the middle of an archive, and body sizes
refused before anything is read.

API tests run the app with a clock the test moves; no worker consumes this module's Redis keys
(a prefix of their own), and the expansion test runs the worker's expander in this process.
"""

from __future__ import annotations

import calendar
import dataclasses
import io
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image

from api.app import create_app
from shared.errors import QuotaExceeded
from shared.jobs.records import ItemResult
from shared.setting_types import Quotas
from shared.settings import Settings
from shared.storage.object_keys import job_prefix, source_key
from shared.tenancy.quotas import IN_FLIGHT_RETRY_AFTER_S, RESERVATION_GRACE_S, QuotaStore
from tests.integration_fixtures import TEST_MODEL, with_own_keys
from worker.context import WorkerContext
from worker.expansion import Expander, ExpansionLease

pytestmark = pytest.mark.integration

# 2024-05-01 23:00:00 UTC: one hour before the daily quotas renew.
LATE_EVENING = calendar.timegm((2024, 5, 1, 23, 0, 0))
UNLIMITED = Quotas(max_jobs_in_flight=0, max_images_per_day=0, requests_per_s=0, request_burst=0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def quota_settings(app_settings):
    return with_own_keys(app_settings).with_overrides(auth="keys")


class Api:
    """The app with ``quotas``, a fresh tenant and its key, and a clock the test moves."""

    def __init__(self, settings, quotas: Quotas) -> None:
        self.clock = Clock(LATE_EVENING)
        self.app = create_app(settings.with_overrides(quotas=quotas))
        self.services = self.app.extensions["colorize"]
        self.services.quotas = QuotaStore(self.services.redis, quotas, self.services.jobs, clock=self.clock)
        self.client = self.app.test_client()
        self.tenant, self.headers = self.new_tenant()

    def new_tenant(self) -> tuple[str, dict[str, str]]:
        tenant = f"q-{uuid.uuid4().hex[:12]}"
        return tenant, {"Authorization": f"Bearer {self.services.keys.create(tenant).token}"}

    def submit(self, data: bytes, filename: str = "p.png", headers: dict[str, str] | None = None, **fields):
        form = {"file": (io.BytesIO(data), filename), **fields}
        return self.client.post(
            "/v1/jobs", data=form, content_type="multipart/form-data", headers=headers or self.headers
        )

    def get(self, path: str, headers: dict[str, str] | None = None):
        return self.client.get(path, headers=headers or self.headers)


@pytest.fixture
def make_api(quota_settings):
    return lambda **quotas: Api(quota_settings, dataclasses.replace(UNLIMITED, **quotas))


def png_bytes(shade: int = 100) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 12), shade, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def zip_bytes(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, name in enumerate(names):
            archive.writestr(name, png_bytes(10 * n))
    return buffer.getvalue()


def assert_429(response, code: str, retry_after_s: int) -> dict:
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == code
    assert response.headers["Retry-After"] == str(retry_after_s)
    assert error["details"]["retry_after_s"] == retry_after_s
    return error


# --- request rate -------------------------------------------------------------------------------


def test_request_rate_is_limited_per_tenant_and_refills(make_api) -> None:
    api = make_api(requests_per_s=2, request_burst=3)
    for _ in range(3):
        assert api.get("/v1/models").status_code == 200
    assert_429(api.get("/v1/models"), "rate_limited", retry_after_s=1)  # one token takes 0.5 s
    other_tenant = api.new_tenant()[1]
    assert api.get("/v1/models", headers=other_tenant).status_code == 200  # a bucket of its own

    api.clock.now += 0.5
    assert api.get("/v1/models").status_code == 200
    assert api.get("/v1/models").status_code == 429
    # A long pause refills the bucket only up to the burst.
    api.clock.now += 60
    assert [api.get("/v1/models").status_code for _ in range(4)] == [200, 200, 200, 429]
    # Probes are not counted.
    assert api.client.get("/healthz").status_code == 200


def test_rate_limit_off_when_zero(make_api) -> None:
    api = make_api(requests_per_s=0)
    assert all(api.get("/v1/models").status_code == 200 for _ in range(30))


# --- jobs in flight -----------------------------------------------------------------------------


def test_jobs_in_flight_are_limited_until_one_finishes(make_api, storage) -> None:
    api = make_api(max_jobs_in_flight=2)
    first = api.submit(png_bytes()).get_json()["id"]
    # A submission that fails does not keep its place.
    assert api.submit(png_bytes(), model="no-such-model").status_code == 422
    assert api.submit(png_bytes()).status_code == 202
    error = assert_429(api.submit(png_bytes()), "quota_exceeded", IN_FLIGHT_RETRY_AFTER_S)
    assert error["details"]["quota"] == "jobs_in_flight" and error["details"]["limit"] == 2
    # The refused submission stored nothing.
    sources = [k for k in storage.iter_keys(f"tenants/{api.tenant}/jobs/") if k.endswith("/source")]
    assert len(sources) == 2
    assert api.submit(png_bytes(), headers=api.new_tenant()[1]).status_code == 202  # other tenants unaffected

    # The first job finishes (the worker's part, played here): its place is free again.
    api.services.jobs.mark_running(first)
    api.services.jobs.record(first, [ItemResult.done(0)])
    third = api.submit(png_bytes())
    assert third.status_code == 202
    assert api.client.post(f"/v1/jobs/{third.get_json()['id']}/cancel", headers=api.headers).status_code == 200
    assert api.submit(png_bytes()).status_code == 202  # a canceled job frees its place too


def test_a_place_reserved_for_a_job_never_created_lapses(make_api) -> None:
    api = make_api(max_jobs_in_flight=1)
    quotas = api.services.quotas
    # As if the API process died between reserving the place and creating the job (the
    # context is kept alive so that nothing gives the place back).
    reservation = quotas.admit_job(api.tenant, "vanished-job")
    reservation.__enter__()
    assert quotas.jobs_in_flight(api.tenant) == 1
    assert api.submit(png_bytes()).status_code == 429
    api.clock.now += RESERVATION_GRACE_S + 1
    assert quotas.jobs_in_flight(api.tenant) == 0
    assert api.submit(png_bytes()).status_code == 202
    del reservation


# --- images per day -----------------------------------------------------------------------------


def test_daily_image_quota_refuses_submissions_until_the_utc_day_ends(make_api) -> None:
    api = make_api(max_images_per_day=2)
    assert [api.submit(png_bytes()).status_code for _ in range(2)] == [202, 202]
    error = assert_429(api.submit(png_bytes()), "quota_exceeded", retry_after_s=3600)
    assert error["details"]["quota"] == "images_per_day"
    # Archives are refused too once the day's images are used up.
    assert_429(api.submit(zip_bytes(["a.png"]), filename="a.zip"), "quota_exceeded", retry_after_s=3600)
    assert api.services.quotas.images_today(api.tenant) == 2

    api.clock.now += 3600
    assert api.submit(png_bytes()).status_code == 202
    assert api.services.quotas.images_today(api.tenant) == 1


class RecordingCelery:
    def __init__(self) -> None:
        self.chunks: list[list[int]] = []
        self.colorize_settings = Settings()  # Redis: lanes by priority in the one queue

    def send_task(self, name, args, queue, **options) -> None:
        self.chunks.append(list(args[1]))


def test_quota_running_out_mid_archive_fails_the_remaining_entries(quota_settings, storage) -> None:
    # One chunk holds the whole archive: its items are queued as one interactive chunk.
    settings = quota_settings.with_overrides(quotas=Quotas(max_images_per_day=3), chunk_size=16)
    celery = RecordingCelery()
    ctx = WorkerContext(settings, celery)
    tenant, job_id = f"q-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    # An unsafe entry is refused before the quota is asked: it does not use up an image.
    names = ["p0.png", "../escape.png", "p1.png", "p2.png", "p3.png", "p4.png"]
    storage.put_bytes(source_key(tenant, job_id), zip_bytes(names))
    ctx.jobs.create_job(
        tenant=tenant,
        model=TEST_MODEL,
        temperature=None,
        source_kind="zip",
        source_key=source_key(tenant, job_id),
        job_id=job_id,
    )
    ctx.jobs.mark_running(job_id)
    lease = ExpansionLease(ctx.redis, ctx.jobs.keys.job(job_id).expander)
    assert lease.acquire()
    Expander(ctx, ctx.jobs.get(job_id), lease).run()

    items = ctx.jobs.items(job_id, 0, 10)
    assert [(i.path, i.status, (i.error or {}).get("code")) for i in items] == [
        ("p0.png", "pending", None),
        ("../escape.png", "failed", "unsafe_entry"),
        ("p1.png", "pending", None),
        ("p2.png", "pending", None),
        ("p3.png", "failed", "quota_exceeded"),
        ("p4.png", "failed", "quota_exceeded"),
    ]
    assert "00:00 UTC" in items[-1].error["message"]
    finished = ctx.jobs.get(job_id)
    assert (finished.total, finished.failed, finished.expanded, finished.error) == (6, 3, True, None)
    # Only the admitted entries were queued; zip members are read where they lie in the source.
    assert sorted(i for chunk in celery.chunks for i in chunk) == [0, 2, 3]
    assert list(storage.iter_keys(job_prefix(tenant, job_id) + "inputs/")) == []
    assert ctx.quotas.images_today(tenant) == 3
    with pytest.raises(QuotaExceeded):
        ctx.quotas.take_image(tenant)


# --- sizes refused before reading ---------------------------------------------------------------


class UnreadableBody(io.BytesIO):
    def read(self, *args) -> bytes:
        raise AssertionError("the request body was read")

    read1 = readline = readinto = read


def test_declared_body_size_over_the_limit_is_refused_unread(make_api, quota_settings) -> None:
    api = make_api()
    limit = quota_settings.limits.max_request_bytes
    # Refused first of all: before authentication (no key here), quotas or the route.
    for headers in (api.headers, {}):
        response = api.client.post(
            "/v1/jobs",
            input_stream=UnreadableBody(),
            environ_overrides={"CONTENT_LENGTH": str(limit + 1)},
            content_type="multipart/form-data; boundary=x",
            headers=headers,
        )
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "payload_too_large"
    response = api.client.post(
        "/v1/uploads", json={"size": quota_settings.limits.max_upload_bytes + 1}, headers=api.headers
    )
    assert response.status_code == 413
