"""The web page at ``/`` in headless Chromium, against the real API, workers, Redis and SeaweedFS.

Chromium is the system's (Debian packages ``chromium`` and ``chromium-driver``, which ``.ci/run``
installs); Playwright drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import base64
import colorsys
import io
import json
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import urllib3
from PIL import Image

from client import Client
from shared.colour.model_manifests import MAX_TEMPERATURE, MIN_TEMPERATURE
from shared.errors import UnsupportedMediaType
from shared.jobs.source_kinds import detect_source_kind
from tests.integration_fixtures import HINT_TEST_MODEL, TEST_MODEL, ApiServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULT_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian package 'chromium')"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the 'playwright' package is not installed")
expect = sync_api.expect

http = urllib3.PoolManager()


# --- browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageProblems:
    """Uncaught script errors and Content-Security-Policy refusals seen by a page."""

    def __init__(self, page) -> None:
        self.messages: list[str] = []
        page.on("pageerror", lambda error: self.messages.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.messages.append(message.text)


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.problems = PageProblems(page)
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def no_earlier_jobs(request):
    """The page lists the tenant's recent jobs as it loads: other tests' jobs of the shared
    open-mode tenant are deleted first, so that each test sees its own jobs only."""
    if "api_server" not in request.fixturenames:
        return
    api_url = request.getfixturevalue("api_server").url
    with Client(api_url, retries=1) as client:
        for job in list(client.iter_jobs()):
            client.delete(job.id)


@pytest.fixture(scope="module")
def keyed_api(app_settings):
    """The API with every request needing a key (as when it is bound beyond loopback)."""
    server = ApiServer(app_settings.with_overrides(auth="keys"))
    yield server
    server.stop()


# --- inputs and helpers ------------------------------------------------------------------------


def grey_png(width: int, height: int) -> bytes:
    x = np.linspace(30, 220, width)[None, :]
    y = np.linspace(0, 30, height)[:, None]
    buffer = io.BytesIO()
    Image.fromarray((x + y).astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def wait_for_results(page, count: int) -> None:
    """Until ``count`` result images (and their "before" images) have loaded."""
    page.wait_for_function(
        """count => {
            const loaded = img => img.complete && img.naturalWidth > 0;
            const after = [...document.querySelectorAll('.result img.after')].filter(loaded);
            const before = [...document.querySelectorAll('.result img.before')].filter(loaded);
            return after.length >= count && before.length >= count;
        }""",
        arg=count,
    )


def drop_files(page, selector: str, files: dict[str, bytes]) -> None:
    """Drop ``files`` on ``selector`` as a drag from the desktop would."""
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const [name, encoded] of files) {
                const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, {type: "image/png"}));
            }
            return transfer;
        }""",
        [[name, base64.b64encode(data).decode()] for name, data in files.items()],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def natural_sizes(page, selector: str) -> list[tuple[int, int]]:
    return [
        tuple(size)
        for size in page.eval_on_selector_all(selector, "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    ]


def downloaded(page, locator) -> tuple[str, bytes]:
    with page.expect_download() as info:
        locator.click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def job_document(api_url: str, job_id: str) -> dict:
    response = http.request("GET", f"{api_url}/v1/jobs/{job_id}")
    assert response.status == 200, response.data
    return json.loads(response.data)


def likely_colours(api_url: str, job_id: str, x: float, y: float) -> list[str]:
    response = http.request("GET", f"{api_url}/v1/jobs/{job_id}/items/0/likely-colours", fields={"x": x, "y": y})
    assert response.status == 200, response.data
    return [c["color"] for c in json.loads(response.data)["colors"]]


def screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    if os.environ.get("COLORIZE_WEB_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["COLORIZE_WEB_SCREENSHOT_DIR"]) / path.name), full_page=True)


# --- tests -------------------------------------------------------------------------------------


def test_one_photo_is_colorized_compared_and_downloaded(page, api_server, workers, tmp_path) -> None:
    photo = write(tmp_path / "grandparents 1952.png", grey_png(96, 64))
    page.goto(api_server.url + "/")
    # The documented range, from GET /v1/models; one model installed, so no model choice.
    expect(page.locator("#temperature-range")).to_have_text(f"{MIN_TEMPERATURE:g} – {MAX_TEMPERATURE:g}")
    expect(page.locator("#model-field")).to_be_hidden()
    page.eval_on_selector("#temperature", "el => { el.value = '0.6'; el.dispatchEvent(new Event('input')); }")
    expect(page.locator("#temperature-value")).to_have_text("0.60")

    page.set_input_files("#file-input", str(photo))
    wait_for_results(page, 1)

    job = page.locator(".job")
    expect(job.locator(".status")).to_have_text("succeeded")
    expect(job.locator(".job-progress")).to_have_js_property("value", 1)
    assert natural_sizes(page, ".result img.after") == [(96, 64)]
    assert natural_sizes(page, ".result img.before") == [(96, 64)]
    # A PNG the browser can show: "before" is the upload itself, not the result in grey.
    expect(page.locator(".result img.before")).not_to_have_class("before greyscale")
    assert job_document(api_server.url, job.get_attribute("data-job-id"))["temperature"] == 0.6

    slider = page.locator(".compare-slider")
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")
    expect(page.locator(".compare")).to_have_attribute("style", "--position: 47%;")

    name, data = downloaded(page, page.get_by_role("link", name="Download JPEG"))
    assert name == "grandparents 1952.jpg"
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (96, 64)
    expect(job.locator(".zip-link")).to_be_hidden()  # one image: its JPEG is the download

    screenshot(page, tmp_path / "web-one-photo.png")
    assert page.problems.messages == []


def test_a_file_the_api_refuses_shows_its_message_and_code(page, api_server, tmp_path) -> None:
    notes = write(tmp_path / "notes.txt", b"shopping list: milk, film, fixer\n")
    with pytest.raises(UnsupportedMediaType) as refusal:
        detect_source_kind(notes.read_bytes(), notes.name)
    page.goto(api_server.url + "/")

    page.set_input_files("#file-input", str(notes))

    error = page.locator(".job .job-error")
    expect(error).to_be_visible()
    expect(error.locator(".error-message")).to_have_text(refusal.value.message)
    expect(error.locator(".error-code")).to_have_text("unsupported_media_type · HTTP 415")
    expect(error.locator(".error-title")).to_contain_text("neither a supported image nor an archive")
    expect(page.locator(".job .status")).to_have_text("error")
    expect(page.locator(".job .retry-button")).to_be_hidden()  # sending it again would not help
    screenshot(page, tmp_path / "web-refused.png")
    assert page.problems.messages == []


def test_an_archive_over_the_direct_limit_goes_by_presigned_multipart_upload(
    page, api_server, workers, app_settings, tmp_path
) -> None:
    # Larger than the API's direct request limit and than one upload part: two presigned PUTs.
    padding = os.urandom(app_settings.multipart_part_bytes + 512 * 1024)
    assert len(padding) > app_settings.limits.max_request_bytes
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("album/beach.png", grey_png(48, 32))
        archive.writestr("album/garden.png", grey_png(30, 40))
        archive.writestr("padding.bin", padding)
    source = write(tmp_path / "album.zip", buffer.getvalue())
    storage_puts: list[str] = []
    page.on("request", lambda request: request.method == "PUT" and storage_puts.append(request.url))
    page.goto(api_server.url + "/")

    page.set_input_files("#file-input", str(source))
    wait_for_results(page, 2)

    job = page.locator(".job")
    expect(job.locator(".status")).to_have_text("partially succeeded")
    assert [url.startswith(app_settings.s3_endpoint_url) and "partNumber=" in url for url in storage_puts] == [
        True,
        True,
    ]
    assert sorted(natural_sizes(page, ".result img.after")) == [(30, 40), (48, 32)]
    # Archive entries have no local original: "before" is the result in grey.
    expect(page.locator(".result img.before.greyscale")).to_have_count(2)
    expect(job.locator(".failures summary")).to_have_text("1 image could not be colorized")
    expect(job.locator(".failure-list li strong")).to_have_text("padding.bin")
    expect(job.locator(".failure-list code")).to_have_text("unsupported_format")

    name, data = downloaded(page, job.get_by_role("link", name="Download all (zip)"))
    assert name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(data)) as results:
        assert sorted(results.namelist()) == ["album/beach.jpg", "album/garden.jpg", "manifest.json"]

    screenshot(page, tmp_path / "web-archive.png")
    assert page.problems.messages == []


def test_with_keys_required_the_page_asks_for_one_and_uses_it_for_dropped_photos(
    page, keyed_api, workers, tmp_path
) -> None:
    page.goto(keyed_api.url + "/")
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("API key is required")  # the API's 401 message
    screenshot(page, tmp_path / "web-key-needed.png")

    token = keyed_api.app.extensions["colorize"].keys.create(f"web-{uuid.uuid4().hex[:8]}").token
    page.fill("#key-input", token)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#temperature-range")).not_to_have_text("…")
    assert page.evaluate("() => localStorage.getItem('colorize.apiKey')") == token

    drop_files(page, "#drop-zone", {"street.png": grey_png(40, 24), "harbour.png": grey_png(24, 40)})
    # Two photos, two jobs. The result route needs the key and redirects to storage, which must
    # not see it.
    wait_for_results(page, 2)
    expect(page.locator(".job .status")).to_have_text(["succeeded", "succeeded"])
    expect(page.locator(".job .job-name")).to_have_text(["street.png", "harbour.png"])
    assert sorted(natural_sizes(page, ".result img.after")) == [(24, 40), (40, 24)]
    screenshot(page, tmp_path / "web-with-key.png")
    assert page.problems.messages == []


def test_a_reload_shows_the_recent_jobs_newest_first(page, api_server, workers, tmp_path) -> None:
    with Client(api_server.url) as client:
        earlier = client.submit(write(tmp_path / "before reload.png", grey_png(32, 20)), wait=30)
    assert earlier.status == "succeeded"
    page.goto(api_server.url + "/")
    job = page.locator(f'.job[data-job-id="{earlier.id}"]')
    expect(job.locator(".status")).to_have_text("succeeded")
    expect(job.locator(".job-name")).to_have_text("before reload.png")
    wait_for_results(page, 1)  # its result, and the result in grey as "before" (no local original)
    expect(page.locator(".result img.before.greyscale")).to_have_count(1)

    page.set_input_files("#file-input", str(write(tmp_path / "after reload.png", grey_png(20, 32))))
    wait_for_results(page, 2)
    page.reload()
    expect(page.locator(".job .job-name")).to_have_text(["after reload.png", "before reload.png"])
    expect(page.locator(".job .status")).to_have_text(["succeeded", "succeeded"])
    wait_for_results(page, 2)
    screenshot(page, tmp_path / "web-reloaded.png")
    assert page.problems.messages == []


# --- colour hints ------------------------------------------------------------------------------

HINT_POINTS = [(0.25, 0.5, "#d02020"), (0.75, 0.5, "#2040d0")]


def hue_degrees(red: int, green: int, blue: int) -> float:
    return colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)[0] * 360


def test_two_hints_placed_on_the_photo_recolour_their_points(page, hint_api_server, tmp_path) -> None:
    with Client(hint_api_server.url, retries=1) as client:
        for earlier in list(client.iter_jobs()):
            client.delete(earlier.id)
    photo = write(tmp_path / "dress.png", grey_png(96, 64))
    page.goto(hint_api_server.url + "/")
    expect(page.locator("#model-select")).to_have_value(HINT_TEST_MODEL)  # the server's default
    page.set_input_files("#file-input", str(photo))
    wait_for_results(page, 1)
    editor = page.locator(".hint-editor")
    expect(editor).to_be_visible()
    photo_on_page = editor.locator(".hint-photo")
    page.wait_for_function("() => document.querySelector('.hint-photo').naturalWidth > 0")
    box = photo_on_page.bounding_box()
    assert box is not None

    def place(x: float, y: float) -> None:
        photo_on_page.click(position={"x": x * box["width"], "y": y * box["height"]})

    place(0.6, 0.1)  # placed, then removed: not sent
    swatches = editor.locator(".hint-swatch")
    expect(swatches).to_have_count(5)  # the model's five likely colours there, the first one taken
    job_id = page.locator(".job").get_attribute("data-job-id")
    likely = likely_colours(hint_api_server.url, job_id, 0.6, 0.1)
    assert [swatches.nth(i).get_attribute("title") for i in range(5)] == likely
    expect(editor.locator(".hint-entry")).to_contain_text(likely[0])
    editor.get_by_role("button", name="Remove point 1").click()
    editor.locator(".hint-size").select_option("0.08")
    for x, y, colour in HINT_POINTS:
        place(x, y)
        editor.locator(".hint-picker").fill(colour)
    expect(editor.locator(".hint-entry")).to_have_count(2)
    expect(editor.locator(".hint-marker")).to_have_count(2)

    editor.get_by_role("button", name="Re-colorize with these colours").click()
    expect(editor).to_have_attribute("data-recolorized", "1")
    page.wait_for_function(
        "() => { const img = document.querySelector('.result img.after'); "
        "return img.complete && img.src.startsWith('blob:') && img.naturalWidth === 96; }"
    )
    pixels = page.evaluate(
        """points => {
            const img = document.querySelector('.result img.after');
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            return points.map(([x, y]) => Array.from(
                context.getImageData(Math.floor(x * canvas.width), Math.floor(y * canvas.height), 1, 1).data));
        }""",
        [[x, y] for x, y, _ in HINT_POINTS],
    )
    for (_, _, colour), (red, green, blue, _) in zip(HINT_POINTS, pixels):
        wanted = hue_degrees(int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
        distance = abs(hue_degrees(red, green, blue) - wanted)
        assert min(distance, 360 - distance) < 30, (colour, (red, green, blue))

    hinted = job_document(hint_api_server.url, page.locator(".job").get_attribute("data-hint-job-id"))
    assert [h["color"] for h in hinted["hints"]] == [colour for _, _, colour in HINT_POINTS]
    placed = [coordinate for h in hinted["hints"] for coordinate in (h["x"], h["y"])]
    assert placed == pytest.approx([coordinate for x, y, _ in HINT_POINTS for coordinate in (x, y)], abs=0.02)
    assert {h["radius"] for h in hinted["hints"]} == {0.08}
    screenshot(page, tmp_path / "web-hints.png")
    assert page.problems.messages == []


def test_a_result_of_a_model_without_hints_is_recolorized_by_its_hint_twin(page, hint_api_server, tmp_path) -> None:
    photo = write(tmp_path / "coat.png", grey_png(96, 64))
    page.goto(hint_api_server.url + "/")
    page.select_option("#model-select", TEST_MODEL)
    page.set_input_files("#file-input", str(photo))
    wait_for_results(page, 1)
    editor = page.locator(".hint-editor")
    expect(editor).to_be_visible()
    page.wait_for_function("() => document.querySelector('.hint-photo').naturalWidth > 0")
    box = editor.locator(".hint-photo").bounding_box()
    assert box is not None
    editor.locator(".hint-photo").click(position={"x": 0.5 * box["width"], "y": 0.5 * box["height"]})
    expect(editor.locator(".hint-swatch").first).to_be_visible()
    editor.locator(".hint-picker").fill("#2040d0")
    editor.get_by_role("button", name="Re-colorize with these colours").click()
    expect(editor).to_have_attribute("data-recolorized", "1")
    hinted = job_document(hint_api_server.url, page.locator(".job").first.get_attribute("data-hint-job-id"))
    assert hinted["model"] == HINT_TEST_MODEL and [h["color"] for h in hinted["hints"]] == ["#2040d0"]
    assert page.problems.messages == []
