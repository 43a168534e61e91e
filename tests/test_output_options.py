"""Output options and metadata end to end: real API server, a real worker process, Redis, SeaweedFS.

A camera-like JPEG (ICC profile, EXIF orientation 6 and DateTimeOriginal, IPTC caption, XMP)
goes through the service; its result keeps the caption, the date and the profile, stands
upright with its orientation normalised, and names the model that made it. PNG and WebP jobs
with ``max_side`` come back in their format, scaled down, under their extension. PNGs with
hostile metadata (XMP crafted to be slow or to hide the provenance, chunks that inflate past
the limit) are colorized, each result naming our model alone.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import urllib3
from PIL import Image, IptcImagePlugin

from shared.colour.model_manifests import load_manifest
from shared.imaging.provenance import NAMESPACE
from shared.settings import Settings
from tests.integration_fixtures import TEST_MODEL, ApiServer, wait_until, with_own_keys
from tests.metadata_samples import (
    CAPTION,
    DATE_TAKEN,
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    IPTC_CAPTION,
    ORIENTATION,
    XMP_CAPTION,
    grey_png_with,
    inflating,
    open_descriptions_xmp,
    photo_jpeg,
    planted_xmp,
    png_chunk,
    srgb_profile,
    xmp_chunk,
)

pytestmark = pytest.mark.integration

POLL_TIMEOUT_S = 60
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
http = urllib3.PoolManager(retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=2))


@pytest.fixture(scope="module")
def own_settings(app_settings: Settings) -> Settings:
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def api(own_settings: Settings, start_worker) -> Iterator[str]:
    start_worker(own_settings, count=1)
    server = ApiServer(own_settings)
    yield server.url
    server.stop()


def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any, urllib3.HTTPHeaderDict]:
    response = http.request(method, url, **kwargs)
    body: Any = response.data
    if response.headers.get("Content-Type", "").startswith("application/json"):
        body = json.loads(body)
    return response.status, body, response.headers


def submit_form(api: str, filename: str, data: bytes, **fields: str) -> dict:
    status, job, _ = call("POST", f"{api}/v1/jobs", fields={"file": (filename, data), **fields})
    assert status == 202, job
    return job


def uploaded(api: str, filename: str, data: bytes) -> str:
    """The id of a presigned upload of ``data``."""
    status, upload, _ = call("POST", f"{api}/v1/uploads", json={"filename": filename, "size": len(data)})
    assert status == 201, upload
    assert http.request("PUT", upload["url"], body=data).status == 200
    return str(upload["upload_id"])


def create_from_upload(api: str, upload_id: str, **options: Any) -> tuple[int, dict]:
    status, job, _ = call("POST", f"{api}/v1/jobs", json={"upload_id": upload_id, **options})
    return status, job


def finished(api: str, job_id: str) -> dict:
    def ended() -> dict | None:
        status, job, _ = call("GET", f"{api}/v1/jobs/{job_id}")
        assert status == 200
        return job if job["status"] in TERMINAL else None

    return wait_until(ended, POLL_TIMEOUT_S, f"job {job_id} ends")


def items_of(api: str, job_id: str) -> list[dict]:
    status, page, _ = call("GET", f"{api}/v1/jobs/{job_id}/items?limit=100")
    assert status == 200
    return page["items"]


def result(api: str, item: dict, content_type: str) -> Image.Image:
    status, data, headers = call("GET", api + item["result_url"])
    assert status == 200 and headers["Content-Type"] == content_type
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- metadata -------------------------------------------------------------------------------


def test_camera_jpeg_result_keeps_its_metadata_upright_and_names_its_model(api, test_models_dir) -> None:
    job = finished(api, submit_form(api, "harbour.jpg", photo_jpeg(64, 40, orientation=6))["id"])
    assert job["status"] == "succeeded"
    assert job["output"] == {"format": "jpeg", "quality": 90, "max_side": None}
    (item,) = items_of(api, job["id"])
    assert item["output_path"] == "harbour.jpg"
    image = result(api, item, "image/jpeg")

    assert image.size == (40, 64)  # stored 64 x 40, shown turned a quarter
    grey = np.asarray(image.convert("L"), np.float32)
    assert grey[:4].mean() > grey[-30:].mean() + 60  # the bright left column of the stored pixels is now on top
    exif = image.getexif()
    assert exif[ORIENTATION] == 1
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == DATE_TAKEN
    assert image.info["icc_profile"] == srgb_profile()
    iptc = IptcImagePlugin.getiptcinfo(image)
    assert iptc is not None and iptc[IPTC_CAPTION] == CAPTION.encode()

    xmp = image.info["xmp"]
    assert XMP_CAPTION.encode() in xmp and b'tiff:Orientation="1"' in xmp
    sha256 = load_manifest(test_models_dir, TEST_MODEL).sha256
    assert f'xmlns:colorize="{NAMESPACE}"'.encode() in xmp
    assert f'colorize:model="{TEST_MODEL}"'.encode() in xmp and f'colorize:modelSha256="{sha256}"'.encode() in xmp
    assert f'colorize:temperature="{job["temperature"]:g}"'.encode() in xmp


# --- formats and sizes ----------------------------------------------------------------------


def test_png_archive_with_max_side_round_trips(api) -> None:
    buffer = io.BytesIO()
    small = io.BytesIO()
    Image.new("L", (30, 20), 120).save(small, "PNG")
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/harbour.jpg", photo_jpeg(64, 40, orientation=6))
        archive.writestr("a/small.png", small.getvalue())
    job = submit_form(api, "album.zip", buffer.getvalue(), format="png", max_side="32")
    assert job["output"] == {"format": "png", "quality": None, "max_side": 32}
    job = finished(api, job["id"])
    assert job["status"] == "succeeded"
    items = {item["path"]: item for item in items_of(api, job["id"])}
    assert {path: item["output_path"] for path, item in items.items()} == {
        "a/harbour.jpg": "a/harbour.png",
        "a/small.png": "a/small.png",
    }
    harbour = result(api, items["a/harbour.jpg"], "image/png")
    assert harbour.format == "PNG" and harbour.size == (20, 32)  # 40 x 64 upright, scaled to fit 32
    assert harbour.info["icc_profile"] == srgb_profile() and XMP_CAPTION.encode() in harbour.info["xmp"]
    assert harbour.getexif()[ORIENTATION] == 1
    small_result = result(api, items["a/small.png"], "image/png")
    assert small_result.size == (30, 20)  # never scaled up
    assert b"colorize:model" in small_result.info["xmp"]

    status, data, headers = call("GET", f"{api}/v1/jobs/{job['id']}/results.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        outputs = sorted(item["output_path"] for item in items.values())
        assert sorted(archive.namelist()) == sorted([*outputs, "manifest.json"])
        assert Image.open(io.BytesIO(archive.read(items["a/harbour.jpg"]["output_path"]))).format == "PNG"
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(entry["output_path"] for entry in manifest["items"]) == outputs


def test_webp_job_from_an_upload_round_trips(api) -> None:
    upload_id = uploaded(api, "harbour.jpg", photo_jpeg(64, 40))
    status, job = create_from_upload(api, upload_id, format="webp", quality=70, max_side=50)
    assert status == 202, job
    assert job["output"] == {"format": "webp", "quality": 70, "max_side": 50}
    job = finished(api, job["id"])
    assert job["status"] == "succeeded"
    (item,) = items_of(api, job["id"])
    assert item["output_path"] == "harbour.webp"
    image = result(api, item, "image/webp")
    assert image.format == "WEBP" and image.size == (31, 50)
    assert image.info["icc_profile"] == srgb_profile()
    assert image.getexif().get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == DATE_TAKEN
    assert XMP_CAPTION.encode() in image.info["xmp"] and b"colorize:model" in image.info["xmp"]


def test_hostile_metadata_fails_no_image_and_names_only_our_model(api) -> None:
    inputs = {
        "open-descriptions.png": grey_png_with(xmp_chunk(open_descriptions_xmp())),
        "planted.png": grey_png_with(xmp_chunk(planted_xmp())),
        "inflating.png": grey_png_with(
            png_chunk(b"zTXt", b"Comment\x00\x00" + inflating(8 * 1024**2)),
            png_chunk(b"iCCP", b"ICC profile\x00\x00" + inflating(8 * 1024**2)),
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in inputs.items():
            archive.writestr(name, data)
    job = finished(api, submit_form(api, "hostile.zip", buffer.getvalue())["id"])
    assert job["status"] == "succeeded", job
    for item in items_of(api, job["id"]):
        xmp = result(api, item, "image/jpeg").info["xmp"]
        assert b"<!DOCTYPE" not in xmp and b"<!--" not in xmp and b"FAKE-MODEL" not in xmp
        models = [element.get(f"{{{NAMESPACE}}}model") for element in ElementTree.fromstring(xmp).iter()]
        assert [model for model in models if model is not None] == [TEST_MODEL], item["path"]


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"format": "gif"}, "format"),
        ({"quality": "0"}, "quality"),
        ({"quality": "101"}, "quality"),
        ({"quality": "good"}, "quality"),
        ({"format": "png", "quality": "80"}, "quality"),
        ({"max_side": "0"}, "max_side"),
        ({"max_side": "30001"}, "max_side"),
        ({"max_side": "big"}, "max_side"),
    ],
)
def test_bad_form_options_are_400(api, fields: dict, field: str) -> None:
    status, body, _ = call("POST", f"{api}/v1/jobs", fields={"file": ("x.jpg", photo_jpeg(8, 8)), **fields})
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request" and body["error"]["details"]["field"] == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "JPEG"}, "format"),
        ({"quality": "80"}, "quality"),  # JSON numbers are numbers
        ({"quality": 80.5}, "quality"),
        ({"format": "png", "quality": 80}, "quality"),
        ({"max_side": -1}, "max_side"),
        ({"max_side": 10**9}, "max_side"),
    ],
)
def test_bad_json_options_are_400_and_leave_the_upload_usable(api, options: dict, field: str) -> None:
    upload_id = uploaded(api, "x.jpg", photo_jpeg(8, 8))
    status, body = create_from_upload(api, upload_id, **options)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request" and body["error"]["details"]["field"] == field
    status, job = create_from_upload(api, upload_id, format="png")
    assert status == 202 and job["output"]["format"] == "png"


def test_openapi_describes_the_options(api, own_settings) -> None:
    status, document, _ = call("GET", f"{api}/v1/openapi.json")
    assert status == 200
    schemas = document["components"]["schemas"]
    for body in ("JobFromForm", "JobFromUpload"):
        properties = schemas[body]["properties"]
        assert properties["max_side"]["maximum"] == own_settings.limits.max_side
        assert set(properties["format"]["enum"]) >= {"jpeg", "png", "webp"}
        assert properties["quality"]["minimum"] == 1 and properties["quality"]["maximum"] == 100
    assert "output" in schemas["Job"]["required"]
