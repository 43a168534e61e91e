"""The HTTP API against real Redis and SeaweedFS: validation, error codes, uploads, cancel, models.

No worker consumes this module's queue (it uses a Redis key prefix of its own), so submitted
jobs stay where the API left them.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import urllib3
from PIL import Image

from api.app import create_app
from shared.errors import ProcessingFailed
from shared.jobs.records import ItemResult, NewItem
from shared.jobs.store import JobStore
from shared.storage.object_keys import result_key
from tests.integration_fixtures import TEST_MODEL, with_own_keys

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_settings(app_settings):
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def app(api_settings):
    return create_app(api_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def jobs(app) -> JobStore:
    return app.extensions["colorize"].jobs


def png_bytes(size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0]), 128, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(client, data: bytes, filename: str = "photo.png", **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data")


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["code"]


# --- submission -----------------------------------------------------------------------------


def test_submit_image_returns_202_with_location_and_job(client, jobs) -> None:
    response = submit(client, png_bytes(), filename="scans/old photo.png")
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["counts"] == {"total": 1, "done": 0, "failed": 0, "pending": 1}
    assert job["expanded"] is True and job["progress"] == 0.0
    assert job["model"] == TEST_MODEL and job["temperature"] == pytest.approx(0.38)
    assert job["source"] == {"filename": "old photo.png", "kind": "image"}
    assert job["error"] is None and job["finished_at"] is None
    assert job["created_at"].endswith("Z")
    assert job["links"] == {
        "self": f"/v1/jobs/{job['id']}",
        "items": f"/v1/jobs/{job['id']}/items",
        "results_zip": f"/v1/jobs/{job['id']}/results.zip",
    }
    assert client.get(job["links"]["self"]).get_json() == job
    (item,) = client.get(job["links"]["items"]).get_json()["items"]
    assert item == {
        "index": 0,
        "path": "old photo.png",
        "output_path": "old photo.jpg",
        "status": "pending",
        "size": len(png_bytes()),
        "result_url": None,
        "error": None,
    }


def test_submit_archive_is_queued_for_expansion(client) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/b.png", png_bytes())
    response = submit(client, buffer.getvalue(), filename="set.zip", temperature="0.2")
    assert response.status_code == 202
    job = response.get_json()
    assert (job["source"]["kind"], job["expanded"], job["counts"]["total"]) == ("zip", False, 0)
    assert job["temperature"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "fields, status, code",
    [
        ({"temperature": "2.5"}, 400, "invalid_request"),
        ({"temperature": "0"}, 400, "invalid_request"),
        ({"temperature": "warm"}, 400, "invalid_request"),
        ({"temperature": "nan"}, 400, "invalid_request"),
        ({"model": "no-such-model"}, 422, "model_not_found"),
        ({"model": "../etc"}, 422, "model_not_found"),
    ],
)
def test_invalid_options(client, fields, status, code) -> None:
    response = submit(client, png_bytes(), **fields)
    assert response.status_code == status
    assert error_code(response) == code


def test_not_an_image_nor_archive_is_415(client) -> None:
    response = submit(client, b"just some text, not a picture", filename="notes.txt")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_form_without_file_is_400(client) -> None:
    response = client.post("/v1/jobs", data={"model": TEST_MODEL}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


def test_other_content_types_are_415(client) -> None:
    response = client.post("/v1/jobs", data=b"raw", content_type="application/octet-stream")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_malformed_json_is_400(client) -> None:
    response = client.post("/v1/jobs", data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    response = client.post("/v1/jobs", json={"model": TEST_MODEL})
    assert response.status_code == 400


def test_request_over_the_limit_is_413(client, api_settings) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(api_settings.limits.max_request_bytes)
    response = submit(client, big)
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


# --- reading jobs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/jobs/0000"),
        ("get", "/v1/jobs/0000/items"),
        ("get", "/v1/jobs/0000/items/0/result"),
        ("get", "/v1/jobs/0000/results.zip"),
        ("post", "/v1/jobs/0000/cancel"),
        ("post", "/v1/uploads/0000/complete"),
        ("get", "/v1/nothing-here"),
    ],
)
def test_unknown_ids_and_routes_are_json_404(client, method, path) -> None:
    response = getattr(client, method)(path, json={"parts": [{"part_number": 1, "etag": "x"}]})
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_wrong_method_is_json_405(client) -> None:
    response = client.delete("/v1/jobs")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "offset=-1"])
def test_item_paging_is_validated(client, query) -> None:
    job = submit(client, png_bytes()).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/items?{query}")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


def test_item_pages_link_to_the_next(client, jobs) -> None:
    job = submit(client, png_bytes()).get_json()
    listing = client.get(f"/v1/jobs/{job['id']}/items?limit=1").get_json()
    assert listing["total"] == 1 and listing["next"] is None and len(listing["items"]) == 1
    # An archive job still being expanded may have more items than registered so far.
    archive_job = jobs.create_job(tenant="local", model=TEST_MODEL, temperature=None, source_kind="zip", source_key="k")
    jobs.add_items(archive_job.id, [NewItem(i, f"{i}.png", f"{i}.jpg", 1) for i in range(3)])
    page = client.get(f"/v1/jobs/{archive_job.id}/items?offset=0&limit=2").get_json()
    assert [i["index"] for i in page["items"]] == [0, 1]
    assert page["next"] == f"/v1/jobs/{archive_job.id}/items?offset=2&limit=2"
    page = client.get(page["next"]).get_json()
    assert [i["index"] for i in page["items"]] == [2]
    assert page["next"] is None and page["expanded"] is False  # more may be registered later
    jobs.add_items(archive_job.id, [NewItem(3, "3.png", "3.jpg", 1)])
    jobs.end_expansion(archive_job.id)
    page = client.get(f"/v1/jobs/{archive_job.id}/items?offset=2&limit=2").get_json()
    assert [i["index"] for i in page["items"]] == [2, 3]
    assert page["next"] is None and page["expanded"] is True and page["total"] == 4


def test_results_of_unfinished_items_are_404_and_done_ones_redirect(client, jobs, app) -> None:
    job = submit(client, png_bytes(), filename="x.png").get_json()
    response = client.get(f"/v1/jobs/{job['id']}/items/0/result")
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert client.get(f"/v1/jobs/{job['id']}/items/7/result").status_code == 404
    # Play the worker's part: store a result and mark the item done.
    storage = app.extensions["colorize"].storage
    storage.put_bytes(result_key("local", job["id"], 0), b"\xff\xd8\xff fake jpeg", content_type="image/jpeg")
    jobs.mark_running(job["id"])
    assert jobs.record(job["id"], [ItemResult.done(0)]).finished
    response = client.get(f"/v1/jobs/{job['id']}/items/0/result")
    assert response.status_code == 302
    assert urllib3.request("GET", response.headers["Location"]).data == b"\xff\xd8\xff fake jpeg"
    item = client.get(f"/v1/jobs/{job['id']}/items").get_json()["items"][0]
    assert item["result_url"] == f"/v1/jobs/{job['id']}/items/0/result"
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["status"] == "succeeded"


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_then_cancel_again_conflicts(client) -> None:
    job = submit(client, png_bytes()).get_json()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    canceled = response.get_json()
    assert canceled["status"] == "canceled" and canceled["finished_at"] is not None
    item = client.get(f"/v1/jobs/{job['id']}/items").get_json()["items"][0]
    assert item["status"] == "canceled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and error_code(again) == "conflict"


def test_cancel_of_a_finished_job_conflicts(client, jobs) -> None:
    job = submit(client, png_bytes()).get_json()
    jobs.mark_running(job["id"])
    jobs.record(job["id"], [ItemResult.failed(0, ProcessingFailed("boom"))])
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["status"] == "failed"
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 409 and error_code(response) == "conflict"


# --- uploads --------------------------------------------------------------------------------


def test_upload_size_is_validated(client, api_settings) -> None:
    response = client.post("/v1/uploads", json={"filename": "x.zip", "size": api_settings.limits.max_upload_bytes + 1})
    assert response.status_code == 413 and error_code(response) == "payload_too_large"
    for size in (0, -5, "12", None, True):
        response = client.post("/v1/uploads", json={"filename": "x.zip", "size": size})
        assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_single_put_upload_becomes_a_job_once(client) -> None:
    data = png_bytes()
    response = client.post("/v1/uploads", json={"filename": "direct.png", "size": len(data)})
    assert response.status_code == 201
    upload = response.get_json()
    assert upload["method"] == "PUT" and upload["expires_at"].endswith("Z")
    early = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]})
    assert early.status_code == 409 and error_code(early) == "conflict"  # nothing uploaded yet
    assert urllib3.request("PUT", upload["url"], body=data).status == 200
    response = client.post("/v1/jobs", json={"upload_id": upload["upload_id"], "temperature": 0.5})
    assert response.status_code == 202
    job = response.get_json()
    assert job["source"] == {"filename": "direct.png", "kind": "image"} and job["temperature"] == 0.5
    again = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]})
    assert again.status_code == 409 and error_code(again) == "conflict"


def test_large_upload_is_multipart(client, api_settings) -> None:
    size = api_settings.multipart_part_bytes * 2 + 1
    response = client.post("/v1/uploads", json={"filename": "big.tar", "size": size})
    assert response.status_code == 201
    body = response.get_json()
    assert "url" not in body and body["multipart"]["part_size"] == api_settings.multipart_part_bytes
    assert [p["part_number"] for p in body["multipart"]["parts"]] == [1, 2, 3]
    incomplete = client.post("/v1/jobs", json={"upload_id": body["upload_id"]})
    assert incomplete.status_code == 409
    bad = client.post(f"/v1/uploads/{body['upload_id']}/complete", json={"parts": [{"part_number": "1"}]})
    assert bad.status_code == 400 and error_code(bad) == "invalid_request"


def test_unknown_upload_is_404(client) -> None:
    response = client.post("/v1/jobs", json={"upload_id": "does-not-exist"})
    assert response.status_code == 404 and error_code(response) == "not_found"


# --- models and health ----------------------------------------------------------------------


def test_models_lists_installed_with_default(client) -> None:
    body = client.get("/v1/models").get_json()
    assert body["default"] == TEST_MODEL
    (model,) = [m for m in body["models"] if m["name"] == TEST_MODEL]
    assert model["default"] is True and model["temperature"] == pytest.approx(0.38)
    assert body["temperature_range"]["min"] < body["temperature_range"]["max"]


def test_models_lists_the_shipped_models_with_their_decoding(api_settings) -> None:
    # Their manifests carry facts the test model's lacks (prior_alpha); each must be shown.
    shipped = Path(__file__).resolve().parent.parent / "models"
    client = create_app(api_settings.with_overrides(models_dir=shipped, model="colorize-lite")).test_client()
    response = client.get("/v1/models")
    assert response.status_code == 200, response.get_json()
    models = {model["name"]: model for model in response.get_json()["models"]}
    manifest = json.loads((shipped / "colorize-lite" / "manifest.json").read_text())
    assert models["colorize-lite"]["prior_alpha"] == pytest.approx(manifest["prior_alpha"])
    assert models["colorize-lite"]["temperature"] == pytest.approx(manifest["temperature"])
    assert models["colorize-lite"]["hints"] is False


def test_health_and_readiness_without_workers(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert error_code(response) == "unavailable"
    checks = response.get_json()["error"]["details"]["checks"]
    assert checks == {"redis": "ok", "storage": "ok", "workers": 0}


def test_unexpected_errors_are_json_500_without_internals(api_settings) -> None:
    app = create_app(api_settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_unreachable_redis_makes_readyz_503(api_settings) -> None:
    app = create_app(api_settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["details"]["checks"]["redis"].startswith("unavailable")


# --- request bodies as described ------------------------------------------------------------


def error_of(response) -> dict:
    assert response.status_code == 400, response.get_json()
    assert error_code(response) == "invalid_request"
    return response.get_json()["error"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"temperature": "0.5"}, "temperature"),  # JSON numbers are numbers, not text
        ({"temperature": ""}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"model": 5}, "model"),
        ({"filename": ["a.png"]}, "filename"),
        ({"upload_id": ""}, "upload_id"),
    ],
)
def test_json_job_fields_must_have_their_described_types(client, fields, field) -> None:
    error = error_of(client.post("/v1/jobs", json={"upload_id": "some-upload", **fields}))
    assert error["details"]["field"] == field and f"'{field}'" in error["message"]


def test_out_of_range_values_are_refused_with_the_range(client) -> None:
    error = error_of(submit(client, png_bytes(), temperature="1.5"))
    assert error["message"] == "'temperature' must be between 0.05 and 1.0"
    assert error["details"] == {"field": "temperature", "minimum": 0.05, "maximum": 1.0}
    job = submit(client, png_bytes()).get_json()
    error = error_of(client.get(f"/v1/jobs/{job['id']}/items?offset=-3"))
    assert error["message"] == "'offset' must be at least 0" and error["details"]["minimum"] == 0


def test_empty_form_fields_count_as_left_out(client) -> None:
    response = submit(client, png_bytes(), model="", temperature="", callback_url="", events="")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["model"] == TEST_MODEL and job["temperature"] == pytest.approx(0.38) and job["webhook"] is None


def test_a_form_without_a_file_says_so(client) -> None:
    error = error_of(client.post("/v1/jobs", data={"file": "not a file"}, content_type="multipart/form-data"))
    assert error["message"] == "the multipart form needs a 'file' field" and error["details"]["field"] == "file"


@pytest.mark.parametrize(
    "parts, field",
    [
        ([], "parts"),
        ([{"part_number": 0, "etag": "x"}], "parts[0].part_number"),
        ([{"part_number": 1, "etag": "x"}, {"part_number": 2}], "parts[1].etag"),
        ([{"part_number": 1, "etag": "x", "size": 5}], "parts[0].size"),
        ("1,2", "parts"),
    ],
)
def test_upload_parts_are_checked_as_described(client, api_settings, parts, field) -> None:
    upload = client.post("/v1/uploads", json={"size": api_settings.multipart_part_bytes + 1}).get_json()
    error = error_of(client.post(f"/v1/uploads/{upload['upload_id']}/complete", json={"parts": parts}))
    assert error["details"]["field"] == field


def test_a_multipart_upload_is_not_completed_without_its_parts(client, api_settings) -> None:
    upload = client.post("/v1/uploads", json={"size": api_settings.multipart_part_bytes + 1}).get_json()
    error = error_of(client.post(f"/v1/uploads/{upload['upload_id']}/complete", json={}))
    assert error["details"]["field"] == "parts"
