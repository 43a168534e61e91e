"""Prometheus metrics of the API and of a real worker (prefork pool, multiprocess mode), and the
worker's JSON log lines, after a job with good and bad items."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import redis
import urllib3
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cli.embedded_services import free_port
from shared.metrics import STAGES, QueueDepthCollector, queue_depth
from shared.queue.broker_queues import RedisQueues
from tests.integration_fixtures import TEST_MODEL, ApiServer, with_own_keys

pytestmark = pytest.mark.integration

http = urllib3.PoolManager(retries=False)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page: dict, name: str, **labels: str) -> float | None:
    return page.get((name, tuple(sorted(labels.items()))))


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 24), shade, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a.png", png(40))
        zf.writestr("b.png", png(200))
        zf.writestr("broken.png", png(90)[:60])  # decodes to nothing: corrupt_image
        zf.writestr("../escape.png", png(10))  # refused while reading the archive: unsafe_entry
    return buffer.getvalue()


@pytest.fixture(scope="module")
def observed(app_settings, start_worker):
    """An API and one worker (JSON logs, metrics on a port) that have run one job to its end."""
    settings = with_own_keys(app_settings).with_overrides(worker_metrics_port=free_port(), log_format="json")
    [worker] = start_worker(settings)
    server = ApiServer(settings)
    response = http.request("POST", f"{server.url}/v1/jobs", fields={"file": ("batch.zip", archive())})
    assert response.status == 202, response.data
    job = json.loads(response.data)
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = json.loads(http.request("GET", f"{server.url}/v1/jobs/{job['id']}").data)
    http.request("GET", f"{server.url}/v1/no-such-route")
    yield settings, server.url, worker, job
    server.stop()


def test_the_api_counts_requests_jobs_and_queue_depth(observed) -> None:
    _, api, _, job = observed
    response = http.request("GET", f"{api}/metrics")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    page = samples(response.data.decode())
    assert value(page, "colorize_http_requests_total", method="POST", route="/v1/jobs", status="202") == 1
    assert value(page, "colorize_http_requests_total", method="GET", route="/v1/jobs/<job_id>", status="200") >= 1
    assert value(page, "colorize_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(page, "colorize_http_request_duration_seconds_count", method="POST", route="/v1/jobs") == 1
    assert value(page, "colorize_jobs_created_total", source_kind="zip") == 1
    assert value(page, "colorize_queue_depth", queue="colorize") == 0
    assert value(page, "colorize_queue_depth", queue="webhooks") == 0
    assert job["status"] == "partially_succeeded" and job["counts"] == {
        "total": 4,
        "done": 2,
        "failed": 2,
        "pending": 0,
    }


def test_the_worker_counts_items_stages_and_model_loads(observed) -> None:
    settings, _, _, _ = observed
    response = http.request("GET", f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
    assert response.status == 200
    page = samples(response.data.decode())
    assert value(page, "colorize_items_processed_total") == 2
    assert value(page, "colorize_items_failed_total", code="corrupt_image") == 1
    assert value(page, "colorize_items_failed_total", code="unsafe_entry") == 1
    for stage in STAGES:
        assert value(page, "colorize_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert value(page, "colorize_model_load_duration_seconds_count", model=TEST_MODEL, device="cpu") >= 1


def test_the_worker_logs_json_lines_with_the_job(observed) -> None:
    _, _, worker, job = observed
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about_job = [line for line in lines if line.get("job_id") == job["id"]]
    assert about_job, lines[-5:]
    assert all(line["tenant"] == "local" and line["task_id"] for line in about_job)


def test_queue_depth_counts_every_priority_level(app_settings) -> None:
    prefix = with_own_keys(app_settings).redis_key_prefix
    client = redis.Redis.from_url(app_settings.redis_url)
    client.rpush(f"{prefix}colorize", "a", "b", "c")
    client.rpush(f"{prefix}colorize\x06\x169", "d")
    assert queue_depth(client, "colorize", prefix) == 4 and queue_depth(client, "webhooks", prefix) == 0
    [family] = QueueDepthCollector(RedisQueues(client, prefix).waiting, ("colorize", "webhooks")).collect()
    assert {s.labels["queue"]: s.value for s in family.samples} == {"colorize": 4, "webhooks": 0}
