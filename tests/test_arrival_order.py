"""A chunk colorizes its items read by reference as their bytes arrive: one URL that drips holds
its own item, not those that answered at once. For real: an HTTP server on 127.0.0.1 with five
quick images and one that drips a byte a second, read in one chunk by one worker process, and
the whole-transfer deadline lowered to DEADLINE_S (no minimum rate) so the drip ends within
the test.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import cv2
import numpy as np
import pytest
import urllib3

from shared.settings import Settings
from tests.integration_fixtures import ApiServer, drip, http_server, wait_until, with_own_keys

pytestmark = pytest.mark.integration

DEADLINE_S = 8.0
DRIP_EVERY_S = 1.0
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
http = urllib3.PoolManager(retries=False)


def png(i: int) -> bytes:
    ramp = np.linspace(20, 230, 24 * (16 + i), dtype=np.uint8).reshape(16 + i, 24)
    return cv2.imencode(".png", ramp)[1].tobytes()


class _Sources(BaseHTTPRequestHandler):
    """``/quick/<i>.png``: an image at once; ``/drip/*``: a 1000-byte answer, one byte every
    DRIP_EVERY_S until the reader hangs up. Records when each drip started and ended."""

    dripping: ClassVar[dict[str, list[float]]] = {}  # path: [started, ended] (ended once it has)

    def do_GET(self) -> None:
        if self.path.startswith("/quick/"):
            data = png(int(self.path.rsplit("/", 1)[1].split(".")[0]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        times = self.dripping.setdefault(self.path, [time.monotonic()])
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        drip(self, DRIP_EVERY_S)
        times.append(time.monotonic())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sources() -> Iterator[str]:
    with http_server(_Sources) as url:
        yield url


@pytest.fixture(scope="module")
def api(app_settings: Settings, start_worker) -> Iterator[str]:
    # One colorizing process, and the job's items in one chunk: whatever holds the chunk holds
    # every item.
    settings = with_own_keys(app_settings).with_overrides(
        webhook_allow_private=True,
        chunk_size=16,
        batch_size=8,
        task_soft_time_limit_s=60,
        task_time_limit_s=70,
        visibility_timeout_s=90,
        limits=dataclasses.replace(app_settings.limits, source_deadline_s=DEADLINE_S, source_min_bytes_per_s=0),
    )
    start_worker(settings, concurrency=1)
    server = ApiServer(settings)
    yield server.url
    server.stop()


def items(api: str, job_id: str) -> list[dict]:
    return json.loads(http.request("GET", f"{api}/v1/jobs/{job_id}/items?limit=100").data)["items"]


def test_items_that_arrived_are_done_while_a_slow_source_still_drips(api: str, sources: str) -> None:
    urls = [f"{sources}/quick/{i}.png" for i in range(2)] + [f"{sources}/drip/slow.png"]
    urls += [f"{sources}/quick/{i}.png" for i in range(2, 5)]
    response = http.request("POST", f"{api}/v1/jobs", json={"source": {"urls": urls}})
    assert response.status == 202, response.data
    job_id = json.loads(response.data)["id"]

    def quick_ones_done() -> list[dict] | None:
        listed = items(api, job_id)
        quick = [item for item in listed if item["index"] != 2]
        return listed if len(quick) == 5 and all(item["status"] == "done" for item in quick) else None

    listed = wait_until(quick_ones_done, 60, "the five quick items are done")
    done_at = time.monotonic()
    drip = _Sources.dripping["/drip/slow.png"]
    assert len(drip) == 1, f"the drip ended {drip[1] - drip[0]:.1f} s after it began, before the quick items were done"
    assert listed[2]["status"] not in ("done", "failed")
    for item in listed[:2] + listed[3:]:
        result = urllib3.request("GET", api + item["result_url"])  # follows the redirect to storage
        assert result.status == 200
        assert cv2.imdecode(np.frombuffer(result.data, np.uint8), cv2.IMREAD_COLOR) is not None

    def ended() -> dict | None:
        job = json.loads(http.request("GET", f"{api}/v1/jobs/{job_id}").data)
        return job if job["status"] in TERMINAL else None

    assert wait_until(ended, 60, "the job ends")["status"] == "partially_succeeded"
    assert [(item["error"] or {}).get("code") for item in items(api, job_id)] == [None] * 2 + ["source_too_slow"] + [
        None
    ] * 3
    print(
        f"quick items done {done_at - drip[0]:.1f} s after the drip began; it was cut off at {drip[1] - drip[0]:.1f} s"
    )
