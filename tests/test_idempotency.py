"""Idempotency-Key on POST /v1/jobs, over HTTP against real Redis and SeaweedFS (no worker runs the jobs)."""

from __future__ import annotations

import io
import json
import threading
import uuid

import numpy as np
import pytest
import redis
import urllib3
from PIL import Image

from tests.integration_fixtures import ApiServer, with_own_keys

pytestmark = pytest.mark.integration

http = urllib3.PoolManager(retries=False, maxsize=16)


@pytest.fixture(scope="module")
def api_settings(app_settings):
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def api(api_settings, storage):
    server = ApiServer(api_settings)
    yield server.url
    server.stop()


@pytest.fixture
def key() -> str:
    return f"order-{uuid.uuid4()}"


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 16), shade, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(api: str, key: str | None, data: bytes, **fields) -> urllib3.BaseHTTPResponse:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return http.request("POST", f"{api}/v1/jobs", fields={"file": ("photo.png", data), **fields}, headers=headers)


def submit_json(api: str, key: str, body: str) -> urllib3.BaseHTTPResponse:
    return http.request(
        "POST", f"{api}/v1/jobs", body=body, headers={"Idempotency-Key": key, "Content-Type": "application/json"}
    )


def job_count(settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    return sum(1 for k in client.scan_iter(f"{settings.redis_namespace}:job:{{*}}") if k.endswith(b"}"))


def test_the_same_key_returns_the_same_job(api: str, key: str, api_settings) -> None:
    before = job_count(api_settings)
    first = submit(api, key, png(90), temperature="0.4")
    second = submit(api, key, png(90), temperature="0.4")
    assert first.status == second.status == 202, second.data
    assert json.loads(first.data)["id"] == json.loads(second.data)["id"]
    assert first.headers["Location"] == second.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers and second.headers["Idempotent-Replayed"] == "true"
    assert job_count(api_settings) == before + 1
    # Without a key every request is a new job.
    assert json.loads(submit(api, None, png(90)).data)["id"] != json.loads(first.data)["id"]


@pytest.mark.parametrize("change", [{"data": png(91)}, {"temperature": "0.5"}, {"filename": "other.png"}])
def test_the_same_key_with_other_parameters_is_a_conflict(api: str, key: str, change: dict) -> None:
    assert submit(api, key, png(90), temperature="0.4").status == 202
    data = change.get("data", png(90))
    fields = {"temperature": change.get("temperature", "0.4")}
    if "filename" in change:
        response = http.request(
            "POST",
            f"{api}/v1/jobs",
            fields={"file": (change["filename"], data), **fields},
            headers={"Idempotency-Key": key},
        )
    else:
        response = submit(api, key, data, **fields)
    assert response.status == 409, response.data
    assert json.loads(response.data)["error"]["code"] == "conflict"


def test_json_requests_are_compared_by_content(api: str, key: str, storage) -> None:
    upload = json.loads(
        http.request("POST", f"{api}/v1/uploads", json={"size": len(png(30)), "filename": "u.png"}).data
    )
    assert http.request("PUT", upload["url"], body=png(30)).status == 200
    body = {"upload_id": upload["upload_id"], "temperature": 0.3}
    first = submit_json(api, key, json.dumps(body))
    # The same parameters in another order and spacing are the same request.
    again = submit_json(api, key, json.dumps(dict(reversed(body.items())), indent=2))
    assert first.status == again.status == 202, again.data
    assert json.loads(first.data)["id"] == json.loads(again.data)["id"]
    other = submit_json(api, key, json.dumps({**body, "temperature": 0.31}))
    assert other.status == 409


def test_concurrent_requests_with_one_key_create_one_job(api: str, key: str, api_settings) -> None:
    before = job_count(api_settings)
    start = threading.Barrier(6)
    responses: list[urllib3.BaseHTTPResponse] = []

    def send() -> None:
        start.wait()
        responses.append(submit(api, key, png(60)))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status for r in responses] == [202] * 6
    assert len({json.loads(r.data)["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert job_count(api_settings) == before + 1


def test_a_failed_request_leaves_the_key_free(api: str, key: str) -> None:
    refused = submit(api, key, png(90), temperature="warm")
    assert refused.status == 400
    created = submit(api, key, png(90), temperature="0.4")
    assert created.status == 202 and "Idempotent-Replayed" not in created.headers


def test_malformed_keys_are_refused(api: str) -> None:
    for bad in ("x" * 256, "tab\there"):
        response = submit(api, bad, png(90))
        assert response.status == 400 and json.loads(response.data)["error"]["code"] == "invalid_request"
