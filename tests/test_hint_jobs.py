"""Colour hints on single-image jobs, over the API with real Redis, SeaweedFS and a worker:
what is refused (and creates nothing), and what a hinted result, its job, its manifest and its
XMP say; the likely colours a hint model keeps beside a single image's result, served at a
point, and which hint model re-colorizes a result of a model without hints.

The models directory of ``hint_settings`` has the tiny test model, which takes no hints, and
its hint-taking twin, whose hinted patches take about the hint's colour.
"""

from __future__ import annotations

import colorsys
import io
import json
import zipfile

import numpy as np
import pytest
import urllib3
from PIL import Image

from api.app import create_app
from tests.integration_fixtures import HINT_TEST_MODEL, TEST_MODEL

pytestmark = pytest.mark.integration

PLAIN_MODEL, HINT_MODEL = TEST_MODEL, HINT_TEST_MODEL
RED, BLUE = "#d02020", "#2040d0"
TWO_HINTS = [
    {"x": 0.2, "y": 0.5, "color": RED, "radius": 0.1},
    {"x": 0.8, "y": 0.5, "color": BLUE, "radius": 0.1},
]


@pytest.fixture(scope="module")
def app(hint_settings):
    return create_app(hint_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def worker(hint_api_server):
    return hint_api_server  # its worker shares hint_settings' keys


def grey_png(width: int = 48, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "PNG")
    return buffer.getvalue()


def turned_grey_jpeg() -> bytes:
    """Stored 64 wide and 96 high, shown a quarter turn clockwise (EXIF orientation 6): 96 x 64."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (64, 96), (128, 128, 128)).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def submit_form(client, hints: object, data: bytes | None = None, filename: str = "photo.png", **fields):
    form: dict[str, object] = {"file": (io.BytesIO(data or grey_png()), filename), **fields}
    if hints is not None:
        form["hints"] = hints if isinstance(hints, str) else json.dumps(hints)
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data", headers={"Prefer": "wait=30"})


def job_count(client) -> int:
    response = client.get("/v1/jobs?limit=100")
    assert response.status_code == 200, response.json
    return len(response.json["jobs"])


def result_image(client, job: dict) -> Image.Image:
    """The result a single-image job's link redirects to (a presigned URL of the store)."""
    location = client.get(job["links"]["result"]).headers["Location"]
    return Image.open(io.BytesIO(urllib3.request("GET", location).data))


def hue(rgb: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(channel / 255 for channel in rgb))[0] * 360


def hue_distance(first: float, second: float) -> float:
    return min(abs(first - second), 360 - abs(first - second))


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


# --- refused -----------------------------------------------------------------------------------

BAD_HINTS = [
    pytest.param([{"x": 0.5, "y": 0.5, "color": "red"}], "hints[0].color", "#rrggbb", id="colour-name"),
    pytest.param([{"x": 0.5, "y": 0.5, "color": "#12345"}], "hints[0].color", "#rrggbb", id="short-colour"),
    pytest.param([{"x": 1.5, "y": 0.5, "color": RED}], "hints[0].x", "at most 1", id="x-outside"),
    pytest.param([{"x": 0.5, "y": -0.1, "color": RED}], "hints[0].y", "at least 0", id="y-outside"),
    pytest.param([{"x": "0.5", "y": 0.5, "color": RED}], "hints[0].x", "number", id="x-text"),
    pytest.param([{"y": 0.5, "color": RED}], "hints[0].x", "required", id="x-missing"),
    pytest.param([{"x": 0.5, "y": 0.5, "color": RED, "size": 3}], "hints[0].size", "not a field", id="unknown-key"),
    pytest.param([{"x": 0.5, "y": 0.5, "color": RED, "radius": 0}], "hints[0].radius", "greater than 0", id="radius-0"),
    pytest.param([{"x": 0.5, "y": 0.5, "color": RED, "radius": 0.3}], "hints[0].radius", "0.25", id="radius-big"),
    pytest.param([{"x": 0.5, "y": 0.5, "color": RED}] * 65, "hints", "at most 64", id="65-points"),
    pytest.param({"x": 0.5, "y": 0.5, "color": RED}, "hints", "list", id="not-a-list"),
    pytest.param([[0.5, 0.5, RED]], "hints[0]", "object", id="point-as-list"),
]


@pytest.mark.parametrize(("hints", "field", "words"), BAD_HINTS)
def test_a_malformed_hint_in_a_form_is_400_naming_its_field_and_creates_nothing(client, hints, field, words) -> None:
    before = job_count(client)
    response = submit_form(client, hints)
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_request" and error["details"]["field"] == field
    assert words in error["message"] and field in error["message"]
    assert job_count(client) == before


@pytest.mark.parametrize(("hints", "field", "words"), BAD_HINTS)
def test_a_malformed_hint_in_a_json_job_is_400_naming_its_field(client, hints, field, words) -> None:
    before = job_count(client)
    response = client.post("/v1/jobs", json={"upload_id": "u" * 20, "hints": hints})
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"]["field"] == field and words in response.json["error"]["message"]
    assert job_count(client) == before


def test_hints_that_are_not_json_are_400(client) -> None:
    response = submit_form(client, "[{x: 0.5}")
    assert response.status_code == 400 and response.json["error"]["details"]["field"] == "hints"


def test_hints_for_a_model_that_takes_none_are_422_and_create_nothing(client) -> None:
    before = job_count(client)
    response = submit_form(client, TWO_HINTS, model=PLAIN_MODEL)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "hints_not_supported" and PLAIN_MODEL in error["message"]
    response = client.post("/v1/jobs", json={"upload_id": "u" * 20, "hints": TWO_HINTS, "model": PLAIN_MODEL})
    assert response.status_code == 422 and response.json["error"]["code"] == "hints_not_supported"
    assert job_count(client) == before


def test_hints_on_an_archive_are_400_and_create_nothing(client) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", grey_png())
    before = job_count(client)
    response = submit_form(client, TWO_HINTS, data=buffer.getvalue(), filename="set.zip")
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"]["field"] == "hints" and "single image" in response.json["error"]["message"]
    assert job_count(client) == before


def test_hints_on_a_source_by_reference_are_400_and_create_nothing(client) -> None:
    before = job_count(client)
    response = client.post("/v1/jobs", json={"source": {"urls": ["https://example.com/a.png"]}, "hints": TWO_HINTS})
    assert response.status_code == 400, response.json
    assert (
        response.json["error"]["details"]["field"] == "hints"
        and "source by reference" in response.json["error"]["message"]
    )
    assert job_count(client) == before


def test_the_models_list_says_which_take_hints(client) -> None:
    models = {model["name"]: model for model in client.get("/v1/models").json["models"]}
    assert models[HINT_MODEL]["hints"] is True and models[PLAIN_MODEL]["hints"] is False


# --- obeyed and recorded -------------------------------------------------------------------------


def test_hints_colour_their_points_of_the_upright_photo_and_are_recorded(client, worker) -> None:
    response = submit_form(client, TWO_HINTS, data=turned_grey_jpeg(), filename="turned.jpg")
    assert response.status_code == 201, response.json
    job = response.json
    assert job["status"] == "succeeded" and job["hints"] == TWO_HINTS

    image = result_image(client, job)
    assert image.size == (96, 64)  # upright: the hints' x runs along the shown width
    pixels = np.asarray(image.convert("RGB"))
    for hint in TWO_HINTS:
        shown = tuple(int(v) for v in pixels[int(hint["y"] * 64), int(hint["x"] * 96)])
        assert hue_distance(hue(shown), hue(hex_rgb(hint["color"]))) < 30, (hint, shown)
    assert b'colorize:hints="2"' in image.info["xmp"]

    results = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/results.zip").data))
    (entry,) = json.loads(results.read("manifest.json"))["items"]
    assert entry["hints"] == TWO_HINTS


def test_a_json_job_from_an_upload_carries_its_hints(client, worker) -> None:
    upload = client.post("/v1/uploads", json={"size": len(grey_png()), "filename": "photo.png"}).json
    assert urllib3.request("PUT", upload["url"], body=grey_png()).status == 200
    response = client.post("/v1/jobs", json={"upload_id": upload["upload_id"], "hints": TWO_HINTS[:1]})
    assert response.status_code == 202, response.json
    assert response.json["hints"] == TWO_HINTS[:1]


def test_a_job_without_hints_shows_none_and_its_result_says_none(client, worker) -> None:
    response = submit_form(client, None)
    assert response.status_code == 201, response.json
    assert "hints" not in response.json
    image = result_image(client, response.json)
    assert b"colorize:hints" not in image.info.get("xmp", b"")


# --- likely colours at a point, and the hint model of a model without hints ------------------------


def likely(client, job: dict, **point: object):
    return client.get(f"/v1/jobs/{job['id']}/items/0/likely-colours", query_string=point)


def test_the_colours_at_a_hinted_point_start_with_the_hints_hue(client, worker) -> None:
    hints = [{"x": 0.2, "y": 0.5, "color": RED, "radius": 0.1}, {"x": 0.8, "y": 0.5, "color": BLUE, "radius": 0.1}]
    job = submit_form(client, hints).json
    assert job["status"] == "succeeded", job
    for hint in hints:
        response = likely(client, job, x=hint["x"], y=hint["y"])
        assert response.status_code == 200, response.json
        colours = response.json["colors"]
        assert len(colours) == 5 and len({c["color"] for c in colours}) == 5
        shares = [c["share"] for c in colours]
        assert shares == sorted(shares, reverse=True)
        top = hex_rgb(colours[0]["color"])
        assert hue_distance(hue(top), hue(hex_rgb(hint["color"]))) < 40, (hint, colours)


def test_a_point_outside_the_photo_is_400_naming_it(client, worker) -> None:
    job = submit_form(client, None).json
    for point, field in (({"x": 1.5, "y": 0.5}, "x"), ({"x": 0.5}, "y"), ({"x": "left", "y": 0.5}, "x")):
        response = likely(client, job, **point)
        assert response.status_code == 400 and response.json["error"]["details"]["field"] == field, response.json


def test_a_model_without_hints_keeps_no_likely_colours(client, worker) -> None:
    job = submit_form(client, None, model=PLAIN_MODEL).json
    assert job["status"] == "succeeded", job
    response = likely(client, job, x=0.5, y=0.5)
    assert response.status_code == 404 and "hints" in response.json["error"]["message"]
    assert likely(client, {"id": "0" * 26}, x=0.5, y=0.5).status_code == 404


def test_a_model_without_hints_names_the_hint_model_built_on_it(client) -> None:
    models = {model["name"]: model for model in client.get("/v1/models").json["models"]}
    assert models[PLAIN_MODEL]["hint_model"] == HINT_MODEL
    assert "hint_model" not in models[HINT_MODEL]
