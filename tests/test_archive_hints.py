"""Colour hints for archives and sources by reference, over the API with real Redis, SeaweedFS
and a worker: a map by item path in the request or an archive's root ``hints.json``, what is
refused (and creates nothing), what a job whose hints.json is wrong says, paths that match no
item, and what hinted items, their job, manifest and XMP say.

The hint-taking test model colours a hinted patch about the hint's colour and leaves the rest as
without hints: warm on a mid-grey photo, far from the blue used here.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
import urllib3
from PIL import Image

from api.app import create_app
from shared.colour.hint_rules import MAX_HINTED_PATHS, MAX_MAP_HINTS
from shared.settings import Settings
from tests.integration_fixtures import TEST_MODEL, http_server, with_own_keys
from tests.test_e2e import tar_gz_of
from tests.test_e2e import zip_of as archive_of
from tests.test_hint_jobs import grey_png, hex_rgb, hue, hue_distance

pytestmark = pytest.mark.integration

RED, BLUE = "#d02020", "#2040d0"
BLUE_SPOT = [{"x": 0.5, "y": 0.5, "color": BLUE, "radius": 0.25}]
RED_SPOT = [{"x": 0.5, "y": 0.5, "color": RED, "radius": 0.25}]
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def archive_settings(hint_settings: Settings) -> Settings:
    # Loopback URLs are sources here (the test's own HTTP server).
    return with_own_keys(hint_settings).with_overrides(webhook_allow_private=True)


@pytest.fixture(scope="module")
def worker(archive_settings: Settings, start_worker) -> None:
    start_worker(archive_settings)


@pytest.fixture
def client(archive_settings: Settings):
    return create_app(archive_settings).test_client()


class _Photos(BaseHTTPRequestHandler):
    """``/photos/<name>.png``: a mid-grey photo."""

    def do_GET(self) -> None:
        data = grey_png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def photos() -> Iterator[str]:
    with http_server(_Photos) as url:
        yield url


def zip_of(files: dict[str, bytes]) -> bytes:
    """Stored: a deflated over-large hints.json would be refused for its ratio before its size."""
    return archive_of(files, zipfile.ZIP_STORED)


def submit_archive(client, data: bytes, filename: str, hints: object = None, **fields):
    form: dict[str, object] = {"file": (io.BytesIO(data), filename), **fields}
    if hints is not None:
        form["hints"] = hints if isinstance(hints, str) else json.dumps(hints)
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data")


def finished(client, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def items_by_path(client, job_id: str) -> dict[str, dict]:
    return {item["path"]: item for item in client.get(f"/v1/jobs/{job_id}/items").json["items"]}


def result_of(client, item: dict) -> Image.Image:
    location = client.get(item["result_url"]).headers["Location"]
    return Image.open(io.BytesIO(urllib3.request("GET", location).data))


def centre_hue(image: Image.Image) -> float:
    pixels = np.asarray(image.convert("RGB"))
    return hue(tuple(int(v) for v in pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]))


def manifest_of(client, job_id: str) -> dict:
    results = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{job_id}/results.zip").data))
    return json.loads(results.read("manifest.json"))


def job_count(client) -> int:
    return len(client.get("/v1/jobs?limit=100").json["jobs"])


def assert_hinted_blue_and_plain_not(client, job: dict, hinted: str, plain: str) -> None:
    items = items_by_path(client, job["id"])
    assert items[hinted]["hints"] == BLUE_SPOT and "hints" not in items[plain]
    hinted_result, plain_result = result_of(client, items[hinted]), result_of(client, items[plain])
    assert hue_distance(centre_hue(hinted_result), hue(hex_rgb(BLUE))) < 30
    assert hue_distance(centre_hue(plain_result), hue(hex_rgb(BLUE))) > 60
    assert b'colorize:hints="1"' in hinted_result.info["xmp"]
    assert b"colorize:hints" not in plain_result.info.get("xmp", b"")
    entries = {entry["input_path"]: entry for entry in manifest_of(client, job["id"])["items"]}
    assert entries[hinted]["hints"] == BLUE_SPOT and "hints" not in entries[plain]


# --- hints.json in the archive --------------------------------------------------------------------


def test_a_zips_hints_json_colours_its_paths_and_is_no_item(client, worker) -> None:
    hints = {"album/a.png": BLUE_SPOT}
    data = zip_of({"album/a.png": grey_png(), "album/b.png": grey_png(), "hints.json": json.dumps(hints).encode()})
    response = submit_archive(client, data, "album.zip")
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "succeeded" and job["counts"]["total"] == 2, job
    assert "unmatched_hints" not in job
    assert_hinted_blue_and_plain_not(client, job, "album/a.png", "album/b.png")


def test_a_tar_gz_hints_json_read_first_wherever_it_lies_and_the_requests_map_wins(client, worker) -> None:
    # hints.json last: the expander finds it in a pass of its own before registering any item.
    archived = {"a.png": RED_SPOT, "b.png": RED_SPOT}
    data = tar_gz_of({"a.png": grey_png(), "b.png": grey_png(), "hints.json": json.dumps(archived).encode()})
    requested = {"a.png": BLUE_SPOT, "b.png": [], "c.png": BLUE_SPOT}  # b.png: no hints after all; c.png: a typo
    response = submit_archive(client, data, "album.tar.gz", requested)
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "succeeded" and job["counts"]["total"] == 2, job
    assert job["unmatched_hints"] == {"count": 1, "paths": ["c.png"]}
    assert manifest_of(client, job["id"])["unmatched_hints"] == {"count": 1, "paths": ["c.png"]}
    assert_hinted_blue_and_plain_not(client, job, "a.png", "b.png")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(json.dumps({"a.png": [{"x": 0.5, "y": 0.5, "color": "blue"}]}).encode(), "#rrggbb", id="colour"),
        pytest.param(json.dumps({"a.png": [{"x": 2, "y": 0.5, "color": BLUE}]}).encode(), "at most 1", id="x"),
        pytest.param(json.dumps({"a.png": BLUE_SPOT * 65}).encode(), "at most 64", id="65-points"),
        pytest.param(json.dumps([BLUE_SPOT]).encode(), "object mapping item paths", id="a-list"),
        pytest.param(b" " * (1024**2 + 1), "at most", id="too-big"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_invalid_hints_json_fails_the_job_before_any_item(client, worker, content: bytes, words: str, kind) -> None:
    files = {"a.png": grey_png(), "hints.json": content}
    data = zip_of(files) if kind == "zip" else tar_gz_of(files)
    response = submit_archive(client, data, f"album.{kind}")
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "failed" and job["counts"]["total"] == 0, job
    assert job["error"]["code"] == "invalid_hints_file"
    assert "hints.json" in job["error"]["message"] and words in job["error"]["message"], job["error"]


def test_a_hints_json_for_a_model_without_hints_is_an_item_saying_so(client, worker) -> None:
    data = zip_of({"a.png": grey_png(), "hints.json": json.dumps({"a.png": BLUE_SPOT}).encode()})
    response = submit_archive(client, data, "album.zip", model=TEST_MODEL)
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "partially_succeeded" and job["counts"] == {
        "total": 2,
        "done": 1,
        "failed": 1,
        "pending": 0,
    }
    items = items_by_path(client, job["id"])
    assert items["a.png"]["status"] == "done" and "hints" not in items["a.png"]
    assert items["hints.json"]["error"]["code"] == "hints_not_supported"
    assert TEST_MODEL in items["hints.json"]["error"]["message"]


# --- a map in the request -----------------------------------------------------------------------------


def test_a_source_by_reference_takes_a_map_by_item_path(client, worker, photos: str) -> None:
    urls = [f"{photos}/photos/a.png", f"{photos}/photos/b.png"]
    body = {"source": {"urls": urls}, "hints": {"a.png": BLUE_SPOT, "photos/a.png": BLUE_SPOT}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "succeeded", job
    # A URL's item path is the last part of its path, as the items list shows it.
    assert job["unmatched_hints"] == {"count": 1, "paths": ["photos/a.png"]}
    assert_hinted_blue_and_plain_not(client, job, "a.png", "b.png")


def test_a_json_job_from_an_uploaded_archive_takes_a_map(client, worker) -> None:
    data = zip_of({"a.png": grey_png(), "b.png": grey_png()})
    upload = client.post("/v1/uploads", json={"size": len(data), "filename": "album.zip"}).json
    assert urllib3.request("PUT", upload["url"], body=data).status == 200
    response = client.post("/v1/jobs", json={"upload_id": upload["upload_id"], "hints": {"a.png": BLUE_SPOT}})
    assert response.status_code == 202, response.json
    job = finished(client, response.json["id"])
    assert job["status"] == "succeeded" and "unmatched_hints" not in job
    assert_hinted_blue_and_plain_not(client, job, "a.png", "b.png")


BAD_MAPS = [
    pytest.param({"a.png": [{"x": 0.5, "y": 0.5, "color": "red"}]}, 'hints["a.png"][0].color', "#rrggbb", id="colour"),
    pytest.param({"a.png": [{"x": 1.5, "y": 0.5, "color": RED}]}, 'hints["a.png"][0].x', "at most 1", id="x"),
    pytest.param({"a.png": [{"x": 0.5, "y": -1, "color": RED}]}, 'hints["a.png"][0].y', "at least 0", id="y"),
    pytest.param({"a.png": [{"x": 0.5, "color": RED}]}, 'hints["a.png"][0].y', "required", id="y-missing"),
    pytest.param(
        {"a.png": [{"x": 0.5, "y": 0.5, "color": RED, "r": 1}]}, 'hints["a.png"][0].r', "not a field", id="key"
    ),
    pytest.param({"a.png": RED_SPOT * 65}, 'hints["a.png"]', "at most 64", id="65-points"),
    pytest.param({"a.png": RED_SPOT[0]}, 'hints["a.png"]', "list", id="not-a-list"),
    pytest.param(
        {f"{n}.png": RED_SPOT for n in range(MAX_HINTED_PATHS + 1)}, "hints", "at most 1000 paths", id="paths"
    ),
    pytest.param({f"{n}.png": RED_SPOT * 64 for n in range(130)}, "hints", f"at most {MAX_MAP_HINTS}", id="points"),
    pytest.param("a.png", "hints", "list of hints", id="text"),
]


@pytest.mark.parametrize(("hints", "field", "words"), BAD_MAPS)
def test_a_malformed_map_with_an_archive_is_400_naming_it_and_creates_nothing(client, hints, field, words) -> None:
    before = job_count(client)
    response = submit_archive(client, zip_of({"a.png": grey_png()}), "album.zip", json.dumps(hints))
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_request" and error["details"]["field"] == field
    assert words in error["message"] and field in error["message"], error
    assert job_count(client) == before


@pytest.mark.parametrize(("hints", "field", "words"), BAD_MAPS)
def test_a_malformed_map_with_a_source_is_400_naming_it_and_creates_nothing(client, hints, field, words) -> None:
    before = job_count(client)
    response = client.post("/v1/jobs", json={"source": {"urls": ["https://example.com/a.png"]}, "hints": hints})
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["details"]["field"] == field and words in error["message"], error
    assert job_count(client) == before


def test_a_map_for_a_single_image_is_400_and_creates_nothing(client) -> None:
    before = job_count(client)
    response = submit_archive(client, grey_png(), "photo.png", {"photo.png": BLUE_SPOT})
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"]["field"] == "hints" and "single image" in response.json["error"]["message"]
    assert job_count(client) == before


def test_a_map_for_a_model_that_takes_none_is_422_and_creates_nothing(client) -> None:
    before = job_count(client)
    response = submit_archive(
        client, zip_of({"a.png": grey_png()}), "album.zip", {"a.png": BLUE_SPOT}, model=TEST_MODEL
    )
    assert response.status_code == 422 and response.json["error"]["code"] == "hints_not_supported", response.json
    body = {"source": {"urls": ["https://example.com/a.png"]}, "hints": {"a.png": BLUE_SPOT}, "model": TEST_MODEL}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422 and response.json["error"]["code"] == "hints_not_supported", response.json
    assert job_count(client) == before
