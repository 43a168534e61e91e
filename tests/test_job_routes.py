"""Listing and deleting jobs, and ``Prefer: wait``, over HTTP with real Redis, SeaweedFS and a worker.

The module's worker and API share a key prefix of their own, so they see only each other.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from datetime import UTC, datetime
from urllib.parse import urlencode

import numpy as np
import pytest
import redis
import urllib3
from PIL import Image

from api.app import create_app
from bench.fault_stack import ApiProcess
from cli.embedded_services import LOOPBACK, free_port
from shared.jobs.listing import JobListing
from shared.jobs.records import ItemResult
from shared.jobs.upkeep import PurgeIndex
from shared.storage.object_keys import job_prefix, result_key, upload_key
from shared.tenancy.storage_quota import StoredBytes, job_owner
from tests.integration_fixtures import broker_idle, wait_until, with_own_keys
from worker.housekeeping import purge_due

pytestmark = pytest.mark.integration

TENANT = "local"  # open mode: loopback requests act for it


@pytest.fixture(scope="module")
def route_settings(app_settings):
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def app(route_settings):
    return create_app(route_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def worker(route_settings, start_worker):
    return start_worker(route_settings)[0]


def png_bytes(size: int = 24, shade: int = 128) -> bytes:
    ramp = np.linspace(0, 255, size * size).reshape(size, size)
    buffer = io.BytesIO()
    Image.fromarray(((ramp + shade) % 256).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(count: int, size: int = 24) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"set/{index:03d}.png", png_bytes(size, index))
    return buffer.getvalue()


def submit(client, data: bytes | None = None, filename: str = "photo.png", headers=None):
    form = {"file": (io.BytesIO(data or png_bytes()), filename)}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data", headers=headers or {})


def listed(client, query: str = "") -> list[str]:
    response = client.get(f"/v1/jobs?{query}")
    assert response.status_code == 200, response.json
    return [job["id"] for job in response.json["jobs"]]


def error_field(response) -> str:
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_request"
    return response.json["error"]["details"]["field"]


# --- listing ---------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first_in_cursor_pages(client) -> None:
    created = [submit(client).json["id"] for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        response = client.get("/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200
        assert len(response.json["jobs"]) <= 2
        seen += [job["id"] for job in response.json["jobs"]]
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    newest = [job_id for job_id in seen if job_id in created]
    assert newest == created[::-1] and len(seen) == len(set(seen))
    assert seen[:5] == created[::-1]  # nothing newer was made meanwhile
    assert client.get(f"/v1/jobs/{seen[0]}").json == client.get("/v1/jobs?limit=1").json["jobs"][0]


def test_listing_filters_by_status_and_creation_time(client) -> None:
    before = datetime.now(UTC)  # the API and the test share a clock
    first, second = submit(client).json["id"], submit(client).json["id"]
    client.post(f"/v1/jobs/{first}/cancel")
    canceled = listed(client, "status=canceled&limit=100")
    assert first in canceled and second not in canceled
    since = listed(client, urlencode({"created_after": before.isoformat().replace("+00:00", "Z"), "limit": 100}))
    assert since[:2] == [second, first]
    created_second = client.get(f"/v1/jobs/{second}").json["created_at"]
    window = {"created_after": before.isoformat(), "created_before": created_second}  # +00:00 and Z alike
    assert listed(client, urlencode(window)) == [first]
    assert listed(client, "created_before=2000-01-01T00:00:00") == []  # no zone: UTC


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=many", "limit"),
        ("status=done", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2024-13-01", "created_before"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
def test_bad_listing_parameters_are_400(client, query, field) -> None:
    assert error_field(client.get(f"/v1/jobs?{query}")) == field


def test_each_tenant_lists_and_deletes_only_its_own_jobs(route_settings) -> None:
    app = create_app(route_settings.with_overrides(auth="keys"))
    keys = app.extensions["colorize"].keys
    client = app.test_client()
    acme, globex = ({"Authorization": f"Bearer {keys.create(tenant).token}"} for tenant in ("acme-list", "globex-list"))
    mine = submit(client, headers=acme).json["id"]
    theirs = submit(client, headers=globex).json["id"]
    assert [job["id"] for job in client.get("/v1/jobs", headers=acme).json["jobs"]] == [mine]
    assert [job["id"] for job in client.get("/v1/jobs", headers=globex).json["jobs"]] == [theirs]
    assert client.delete(f"/v1/jobs/{theirs}", headers=acme).status_code == 404
    assert client.get(f"/v1/jobs/{theirs}", headers=globex).status_code == 200


# --- deletion ----------------------------------------------------------------------------------


def test_deleting_a_finished_job_removes_its_objects_and_every_read_is_404(
    client, worker, storage, route_settings
) -> None:
    response = submit(client, headers={"Prefer": "wait=30"})
    assert response.status_code == 201, response.json
    job_id = response.json["id"]
    assert storage.exists(result_key(TENANT, job_id, 0))
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert list(storage.iter_keys(job_prefix(TENANT, job_id))) == []
    for url in ("", "/items", "/items/0/result", "/results.zip"):
        assert client.get(f"/v1/jobs/{job_id}{url}").status_code == 404, url
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert job_id not in listed(client, "limit=100")
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404  # documented: deleted is gone


def test_deleting_a_job_made_from_an_upload_deletes_the_uploaded_source(client, storage) -> None:
    data = png_bytes()
    upload = client.post("/v1/uploads", json={"filename": "direct.png", "size": len(data)}).json
    assert urllib3.request("PUT", upload["url"], body=data).status == 200
    job_id = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]}).json["id"]
    source = upload_key(TENANT, upload["upload_id"])
    assert storage.exists(source)
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not storage.exists(source)
    # The upload was this job's alone: it cannot make another.
    assert client.post("/v1/jobs", json={"upload_id": upload["upload_id"]}).status_code == 409


def test_deleting_a_running_archive_stops_it_and_nothing_of_it_comes_back(
    client, worker, storage, route_settings
) -> None:
    count = 200
    response = submit(client, zip_of(count, size=192), filename="many.zip")
    job_id = response.json["id"]
    running = wait_until(
        lambda: (job := client.get(f"/v1/jobs/{job_id}").json)["counts"]["done"] >= 2 and job,
        60,
        "the archive is being processed",
    )
    assert running["status"] == "running" and running["counts"]["done"] < count - 50
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    deleted_at = time.monotonic()
    wait_until(lambda: broker_idle(route_settings), 60, "the worker has let go of the job")
    # A chunk in hand when the job went may have stored a batch after it: it deletes that as it
    # finds the job gone, and gives back what the batch counted; the rest never ran.
    client_redis = redis.Redis.from_url(route_settings.redis_url)
    namespace = route_settings.redis_namespace
    stored = StoredBytes(client_redis, route_settings.quotas, namespace=namespace)
    leftover = list(storage.iter_keys(job_prefix(TENANT, job_id)))
    assert leftover == [], f"{len(leftover)} objects {time.monotonic() - deleted_at:.1f} s after the deletion"
    assert stored.counted(TENANT, job_owner(job_id)) == 0
    jobs = create_app(route_settings).extensions["colorize"].jobs
    # What a chunk still in hand would do next: its calls find no job and make no state again...
    assert jobs.begin_chunk(job_id, [70, 71], begin=2).job is None
    assert jobs.record(job_id, [ItemResult.done(60)], begin=[61]).job is None
    assert client_redis.keys(f"{namespace}:job:{{{job_id}}}*") == []
    # ...and a result it was storing lands after the deletion.
    storage.put_bytes(result_key(TENANT, job_id, 60), b"late")
    # The purge the deletion scheduled (housekeeping's, run here) deletes what came late.
    listing = JobListing(client_redis, jobs, namespace=namespace)
    purges = PurgeIndex(client_redis, namespace=namespace)
    member = f"job:{TENANT}:{job_id}"

    def purged() -> bool:
        purge_due(purges, storage, stored, listing)
        return client_redis.zscore(f"{namespace}:purge", member) is None

    wait_until(purged, route_settings.stall_after_s + 30, "the deletion's second purge has run")
    assert list(storage.iter_keys(job_prefix(TENANT, job_id))) == []


# --- Prefer: wait ------------------------------------------------------------------------------


def test_prefer_wait_answers_with_the_finished_image_in_one_request(client, worker) -> None:
    response = submit(client, headers={"Prefer": "respond-async, wait=30; unknown=1, handling=lenient"})
    assert response.status_code == 201, response.json
    assert response.headers["Preference-Applied"] == "wait=30"
    job = response.json
    assert job["status"] == "succeeded" and response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["links"]["result"] == f"/v1/jobs/{job['id']}/items/0/result"
    assert client.get(job["links"]["result"]).status_code == 302


def test_prefer_wait_too_short_answers_202_as_without_it(route_settings) -> None:
    # Keys of their own and no worker: the image cannot be done within the wait, however fast
    # a worker would be.
    client = create_app(with_own_keys(route_settings)).test_client()
    started = time.monotonic()
    response = submit(client, headers={"Prefer": "wait=1"})
    assert response.status_code == 202 and response.headers["Preference-Applied"] == "wait=1", response.json
    assert time.monotonic() - started >= 1
    assert response.json["status"] == "queued" and "result" not in response.json["links"]


@pytest.mark.parametrize("value", ["wait=0", "wait=61", "wait=-1", "wait=1.5", "wait=soon", "wait", 'wait="100"'])
def test_an_invalid_wait_is_400_and_creates_nothing(client, value) -> None:
    before = listed(client, "limit=1")
    response = submit(client, headers={"Prefer": value})
    assert error_field(response) == "Prefer"
    assert listed(client, "limit=1") == before


def test_under_gunicorn_a_waiting_request_holds_up_no_other(route_settings, tmp_path) -> None:
    # Keys of its own and no worker: the job stays queued, so the request waits its whole time,
    # in the one gevent worker process that also has to answer the requests beside it.
    settings = with_own_keys(route_settings).with_overrides(api_host=LOOPBACK, api_port=free_port())
    api = ApiProcess(settings, tmp_path / "api.log").start()
    try:
        http = urllib3.PoolManager(retries=False, timeout=30)
        answers = []
        fields = {"file": ("photo.png", png_bytes(), "image/png")}
        waiting = threading.Thread(
            target=lambda: answers.append(
                http.request("POST", f"{api.url}/v1/jobs", fields=fields, headers={"Prefer": "wait=4"})
            )
        )
        started = time.monotonic()
        waiting.start()
        wait_until(lambda: json.loads(http.request("GET", f"{api.url}/v1/jobs").data)["jobs"], 10, "the job exists")
        asked = time.monotonic()
        assert http.request("GET", f"{api.url}/v1/jobs").status == 200
        assert time.monotonic() - asked < 1.0  # answered while the other request waits
        waiting.join(timeout=30)
        (answer,) = answers
        assert answer.status == 202 and answer.headers["Preference-Applied"] == "wait=4"
        assert time.monotonic() - started >= 4
    finally:
        api.kill()


def test_other_preferences_alone_change_nothing(client) -> None:
    response = submit(client, headers={"Prefer": "respond-async"})
    assert response.status_code == 202 and "Preference-Applied" not in response.headers
