"""Slow and breaking sources, for real: an HTTP server on 127.0.0.1 that drips its answers one
byte every 2 s (or breaks off mid-body), as a URL source and as a tenant's S3 endpoint, real
workers, and the whole-transfer deadline lowered so the test runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import cv2
import numpy as np
import pytest
import urllib3

from shared.errors import SourceTooSlow
from shared.settings import Settings
from shared.storage.customer_buckets import ConnectedBucket
from shared.storage.transfer_deadlines import RATE_GRACE_S, TransferDeadline
from shared.tenancy.stored_connections import Connection
from tests.integration_fixtures import ApiServer, drip, http_server, wait_until, with_own_keys

pytestmark = pytest.mark.integration

DEADLINE_S = 4.0
DRIP_EVERY_S = 2.0
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
http = urllib3.PoolManager(retries=False)


def png() -> bytes:
    ramp = np.linspace(20, 230, 24 * 16, dtype=np.uint8).reshape(16, 24)
    return cv2.imencode(".png", ramp)[1].tobytes()


class _Dripping(BaseHTTPRequestHandler):
    """``/drip/*``: a 1000-byte answer, one byte every DRIP_EVERY_S; ``/broken/*``: half an
    image, then the connection closes. Each request is counted and timed."""

    requests: ClassVar[Counter[str]] = Counter()
    held_s: ClassVar[list[float]] = []  # how long each dripping answer was listened to

    def do_GET(self) -> None:
        self.requests[self.path] += 1
        started = time.monotonic()
        data = png()
        self.send_response(200)
        self.send_header("Content-Length", str(1000 if self.path.startswith("/drip/") else len(data)))
        self.end_headers()
        if self.path.startswith("/broken/"):
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        drip(self, DRIP_EVERY_S)
        self.held_s.append(time.monotonic() - started)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def dripping_server() -> Iterator[str]:
    with http_server(_Dripping) as url:
        yield url


@pytest.fixture(scope="module")
def slow_settings(app_settings: Settings) -> Settings:
    # Chunks may run long enough for the deadline to strike first; two worker processes.
    return with_own_keys(app_settings).with_overrides(
        webhook_allow_private=True,
        task_soft_time_limit_s=60,
        task_time_limit_s=70,
        visibility_timeout_s=90,
        limits=dataclasses.replace(app_settings.limits, source_deadline_s=DEADLINE_S),
    )


@pytest.fixture(scope="module")
def api(slow_settings: Settings, start_worker) -> Iterator[str]:
    start_worker(slow_settings, concurrency=2)
    server = ApiServer(slow_settings)
    yield server.url
    server.stop()


def finished(api: str, job_id: str, timeout_s: float) -> dict:
    def ended() -> dict | None:
        job = json.loads(http.request("GET", f"{api}/v1/jobs/{job_id}").data)
        return job if job["status"] in TERMINAL else None

    return wait_until(ended, timeout_s, f"job {job_id} ends")


def item_errors(api: str, job_id: str) -> list[str | None]:
    items = json.loads(http.request("GET", f"{api}/v1/jobs/{job_id}/items?limit=100").data)["items"]
    return [(item["error"] or {}).get("code") for item in items]


def test_dripping_sources_end_at_the_deadline_and_leave_the_workers_to_others(api: str, dripping_server: str) -> None:
    dripping = []
    for job in range(2):
        urls = [f"{dripping_server}/drip/{job}-{i}.png" for i in range(4)]
        response = http.request("POST", f"{api}/v1/jobs", json={"source": {"urls": urls}})
        assert response.status == 202, response.data
        dripping.append(json.loads(response.data)["id"])
    time.sleep(1.0)  # both workers are reading drips by now

    started = time.monotonic()
    upload = http.request("POST", f"{api}/v1/jobs", fields={"file": ("photo.png", png(), "image/png")})
    assert upload.status == 202, upload.data
    assert finished(api, json.loads(upload.data)["id"], 30)["status"] == "succeeded"
    upload_s = time.monotonic() - started

    for job_id in dripping:
        finished(api, job_id, 60)
        assert item_errors(api, job_id) == ["source_too_slow"] * 4
    attempts = [count for path, count in _Dripping.requests.items() if path.startswith("/drip/")]
    assert len(attempts) == 8 and max(attempts) <= 2
    # Each answer was cut off at the deadline (an item may have been read twice).
    wait_until(lambda: len(_Dripping.held_s) == sum(attempts), 10, "every dripping answer ends")
    assert max(_Dripping.held_s) < DEADLINE_S + 1.0
    print(f"upload finished in {upload_s:.1f} s; drips listened to for at most {max(_Dripping.held_s):.1f} s")


def test_a_source_that_breaks_off_mid_body_is_unreachable(api: str, dripping_server: str) -> None:
    urls = [f"{dripping_server}/broken/{i}.png" for i in range(3)]
    response = http.request("POST", f"{api}/v1/jobs", json={"source": {"urls": urls}})
    assert response.status == 202, response.data
    job_id = json.loads(response.data)["id"]
    finished(api, job_id, 30)
    assert item_errors(api, job_id) == ["source_unreachable"] * 3
    assert all(_Dripping.requests[f"/broken/{i}.png"] == 1 for i in range(3))


def test_a_bucket_that_drips_fails_its_read_at_the_deadline(slow_settings: Settings, dripping_server: str) -> None:
    # The dripping server answers S3's GetObject path (/<bucket>/<key>) as any other.
    connection = Connection(
        name="slow",
        endpoint_url=dripping_server,
        region="us-east-1",
        bucket="drip",
        created_at=0.0,
        access_key_id="tenant-key",
        secret_access_key="tenant-secret",
    )
    bucket = ConnectedBucket(connection, slow_settings)
    started = time.monotonic()
    with pytest.raises(SourceTooSlow):
        bucket.get("bucket-photo.png", 10**6)
    assert time.monotonic() - started < DEADLINE_S + 1.0
    assert _Dripping.requests["/drip/bucket-photo.png"] == 1


def test_a_read_slower_than_the_minimum_rate_is_overdue_after_the_grace() -> None:
    clock = TransferDeadline("x", deadline_s=60, min_bytes_per_s=1000)
    clock.started = 0.0
    clock.count(4000)
    assert clock.overdue(RATE_GRACE_S) is None  # judged only after the grace
    assert clock.overdue(RATE_GRACE_S + 1) == "arrived slower than 1000 bytes/s"
    clock.count(3000)
    assert clock.overdue(RATE_GRACE_S + 1) is None
    assert clock.overdue(61) == "did not arrive within 60 s"
