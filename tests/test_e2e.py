"""End to end over HTTP: real API server, real Celery worker processes, Redis and SeaweedFS."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile

import cv2
import numpy as np
import pytest
import urllib3
from PIL import Image

from shared.imaging.decoding import decode_image
from shared.setting_types import Limits

pytestmark = pytest.mark.integration

POLL_TIMEOUT_S = 60
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
http = urllib3.PoolManager(retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=2))


# --- inputs ---------------------------------------------------------------------------------


def gradient(width: int, height: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """Smooth content (so JPEG keeps L close to the input) that differs per channel."""
    top = np.iinfo(dtype).max
    x = np.linspace(0.1, 0.9, width)[None, :]
    y = np.linspace(0.2, 0.8, height)[:, None]
    planes = [(x * (1 - k * 0.3) + y * (0.2 + k * 0.3)) / 1.5 for k in range(channels)]
    image = np.stack(planes, axis=-1) if channels > 1 else planes[0]
    return (image * top).astype(dtype)


def encoded(ext: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def grey_alpha_png() -> bytes:
    buffer = io.BytesIO()
    pixels = np.dstack([gradient(20, 18, 1), np.full((18, 20), 200, np.uint8)])
    Image.fromarray(pixels, "LA").save(buffer, "PNG")
    return buffer.getvalue()


def good_images() -> dict[str, bytes]:
    return {
        "2020/summer/beach.png": encoded(".png", gradient(40, 30)),
        "2020/winter/snow.jpg": encoded(".jpg", gradient(33, 21, 1)),
        "scans/deep/er/sixteen.png": encoded(".png", gradient(24, 20, 1, np.uint16)),
        "scans/grey_alpha.png": grey_alpha_png(),
        "misc/photo.bmp": encoded(".bmp", gradient(17, 16)),
        "misc/photo.tiff": encoded(".tiff", gradient(26, 14)),
        "misc/web.webp": cv2.imencode(".webp", gradient(30, 20), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),
        "top.png": encoded(".png", gradient(12, 50)),
    }


# Two entries with the same output name: the later one is numbered.
RENAMED = {"misc/photo.tiff": "misc/photo (2).jpg"}


def bad_entries() -> dict[str, tuple[bytes, str]]:
    jpeg = encoded(".jpg", gradient(40, 40))
    return {
        "broken.jpg": (jpeg[: len(jpeg) // 3], "corrupt_image"),
        "notes.txt": (b"shopping list: milk, film, fixer", "unsupported_format"),
        "../evil.png": (encoded(".png", gradient(8, 8)), "unsafe_entry"),
    }


def zip_of(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- HTTP helpers ---------------------------------------------------------------------------


def call(method: str, url: str, **kwargs) -> tuple[int, dict | bytes, urllib3.HTTPHeaderDict]:
    response = http.request(method, url, **kwargs)
    body = response.data
    if response.headers.get("Content-Type", "").startswith("application/json"):
        body = json.loads(body)
    return response.status, body, response.headers


def wait_for_end(api: str, job_id: str) -> dict:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        status, job, _ = call("GET", f"{api}/v1/jobs/{job_id}")
        assert status == 200
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def all_items(api: str, job_id: str, limit: int) -> list[dict]:
    items, url = [], f"/v1/jobs/{job_id}/items?limit={limit}"
    while url:
        status, page, _ = call("GET", api + url)
        assert status == 200
        assert len(page["items"]) <= limit
        items += page["items"]
        url = page["next"]
    return items


def lightness(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)[:, :, 0].astype(np.float32)


def chroma(bgr: np.ndarray) -> float:
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    return float(np.mean(np.abs(lab[:, :, 1] - 128) + np.abs(lab[:, :, 2] - 128)))


def check_result(jpeg: bytes, original: bytes, limits: Limits) -> None:
    """Same size as the input, same lightness (within JPEG and gamut clipping), and coloured."""
    assert jpeg[:3] == b"\xff\xd8\xff"
    result = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    source = decode_image(original, limits)
    assert result.shape == source.shape
    assert np.mean(np.abs(lightness(result) - lightness(source))) < 4.0
    assert chroma(result) > 4.0  # the test model always adds colour; a grey copy would fail


# --- tests ----------------------------------------------------------------------------------


def test_archive_job_end_to_end(api_server, workers, app_settings) -> None:
    api = api_server.url
    good = good_images()
    bad = bad_entries()
    data = zip_of({**good, **{name: content for name, (content, _) in bad.items()}})
    status, job, headers = call("POST", f"{api}/v1/jobs", fields={"file": ("photos.zip", data, "application/zip")})
    assert status == 202, job
    assert headers["Location"] == f"/v1/jobs/{job['id']}"

    job = wait_for_end(api, job["id"])
    assert job["status"] == "partially_succeeded"
    assert job["counts"] == {"total": len(good) + len(bad), "done": len(good), "failed": len(bad), "pending": 0}
    assert job["expanded"] is True and job["progress"] == 1.0 and job["error"] is None
    assert job["started_at"] <= job["finished_at"]

    items = all_items(api, job["id"], limit=3)
    assert [item["index"] for item in items] == list(range(len(good) + len(bad)))
    by_path = {item["path"]: item for item in items}
    assert {name: by_path[name]["error"]["code"] for name in bad} == {n: code for n, (_, code) in bad.items()}
    for name, content in good.items():
        item = by_path[name]
        assert item["status"] == "done" and item["error"] is None and item["size"] == len(content)
        assert item["output_path"] == RENAMED.get(name, name.rsplit(".", 1)[0] + ".jpg")
        status, jpeg, _ = call("GET", api + item["result_url"])  # follows the redirect to storage
        assert status == 200
        check_result(jpeg, content, app_settings.limits)
        item["jpeg"] = jpeg

    status, archive_bytes, headers = call("GET", api + job["links"]["results_zip"])
    assert status == 200 and headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        names = archive.namelist()
        assert names[-1] == "manifest.json"  # how every item ended, last
        assert sorted(names[:-1]) == sorted(by_path[name]["output_path"] for name in good)
        for name in good:
            assert archive.read(by_path[name]["output_path"]) == by_path[name]["jpeg"]
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["job_id"] == job["id"] and len(manifest["items"]) == len(good) + len(bad)
    ended = {entry["input_path"]: (entry["status"], entry["error_code"]) for entry in manifest["items"]}
    assert ended["notes.txt"] == ("failed", "unsupported_format")
    assert ended["2020/summer/beach.png"] == ("done", None)


def test_single_image_job(api_server, workers, app_settings) -> None:
    api = api_server.url
    content = encoded(".png", gradient(64, 48))
    status, job, _ = call(
        "POST", f"{api}/v1/jobs", fields={"file": ("portrait.png", content, "image/png"), "temperature": "0.9"}
    )
    assert status == 202
    job = wait_for_end(api, job["id"])
    assert job["status"] == "succeeded" and job["temperature"] == 0.9
    (item,) = all_items(api, job["id"], limit=10)
    assert item["output_path"] == "portrait.jpg"
    status, jpeg, _ = call("GET", api + item["result_url"])
    check_result(jpeg, content, app_settings.limits)


def test_presigned_multipart_upload(api_server, workers, app_settings) -> None:
    api = api_server.url
    files = {f"roll{i}/frame{i}.png": encoded(".png", gradient(30 + i, 20)) for i in range(3)}
    # Random bytes do not compress: they make the archive span two parts (and fail as an item).
    files["roll0/padding.bin"] = np.random.default_rng(7).bytes(app_settings.multipart_part_bytes + 1000)
    data = tar_gz_of(files)
    assert len(data) > app_settings.multipart_part_bytes

    status, upload, _ = call("POST", f"{api}/v1/uploads", json={"filename": "film.tar.gz", "size": len(data)})
    assert status == 201, upload
    part_size = upload["multipart"]["part_size"]
    parts = []
    for part in upload["multipart"]["parts"]:
        start = (part["part_number"] - 1) * part_size
        response = http.request("PUT", part["url"], body=data[start : start + part_size])
        assert response.status == 200
        parts.append({"part_number": part["part_number"], "etag": response.headers["ETag"]})
    assert len(parts) == 2
    status, done, _ = call("POST", f"{api}/v1/uploads/{upload['upload_id']}/complete", json={"parts": parts})
    assert status == 200, done
    assert done["size"] == len(data)

    status, job, _ = call("POST", f"{api}/v1/jobs", json={"upload_id": upload["upload_id"], "temperature": 0.2})
    assert status == 202, job
    assert job["source"] == {"filename": "film.tar.gz", "kind": "tar.gz"}
    job = wait_for_end(api, job["id"])
    assert job["status"] == "partially_succeeded"
    assert (job["counts"]["done"], job["counts"]["failed"]) == (3, 1)
    items = {item["path"]: item for item in all_items(api, job["id"], limit=100)}
    assert set(items) == set(files)
    assert items["roll0/padding.bin"]["error"]["code"] == "unsupported_format"


def test_truncated_archive_keeps_entries_before_the_damage(api_server, workers) -> None:
    api = api_server.url
    files = {f"f{i}.png": encoded(".png", gradient(16 + i, 16)) for i in range(3)}
    files["last.png"] = bytes(np.random.default_rng(1).integers(0, 255, 20_000, np.uint8))
    data = tar_gz_of(files)
    cut = data[: len(data) - 2_000]
    status, job, _ = call("POST", f"{api}/v1/jobs", fields={"file": ("cut.tar.gz", cut, "application/gzip")})
    assert status == 202
    job = wait_for_end(api, job["id"])
    assert job["status"] == "partially_succeeded"
    assert job["error"]["code"] == "corrupt_archive"
    assert job["counts"]["done"] == 3


def test_ready_with_workers(api_server, workers) -> None:
    status, body, _ = call("GET", f"{api_server.url}/readyz")
    assert status == 200
    assert body["checks"]["workers"] >= len(workers)
