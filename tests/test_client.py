"""The Python client against the real stack (API, Celery workers, Redis, SeaweedFS), and its
retry, redirect and error handling against small scripted HTTP servers on real sockets."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from cli.embedded_services import free_port
from client import Client, ClientError, Item, Job, Output
from client.packing import pack_zip, plan_entries
from shared.jobs.store import JobStore
from tests.integration_fixtures import TEST_MODEL

WAIT_S = 60


def gradient(width: int, height: int) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return np.dstack([(x + y) / 2, x, y]).astype(np.uint8)


def write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, gradient(width, height))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def photo_folder(root: Path) -> Path:
    """Nested folders, one non-image and one hidden file (which is not sent)."""
    folder = root / "album"
    write_image(folder / "1990" / "summer" / "beach.png", 40, 30)
    write_image(folder / "1990" / "snow.jpg", 33, 21)
    write_image(folder / "cover.png", 24, 36)
    (folder / "notes.txt").write_text("film: HP5")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return folder


# --- packing ------------------------------------------------------------------------------


def test_one_folder_is_packed_relative_to_itself_without_hidden_files(tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    packed = pack_zip([folder], directory=tmp_path)
    with zipfile.ZipFile(packed) as archive:
        names = sorted(archive.namelist())
        assert archive.read("1990/summer/beach.png") == (folder / "1990/summer/beach.png").read_bytes()
    assert names == ["1990/snow.jpg", "1990/summer/beach.png", "cover.png", "notes.txt"]


def test_several_paths_keep_folder_names_and_clashing_names_are_numbered(tmp_path: Path) -> None:
    one = write_image(tmp_path / "a" / "cover.png", 8, 8)
    folder = photo_folder(tmp_path)
    other = write_image(tmp_path / "b" / "COVER.png", 8, 8)
    entries = plan_entries([one, folder, other])
    names = [entry.name for entry in entries]
    assert names[0] == "cover.png" and names[-1] == "COVER (2).png"
    assert "album/1990/summer/beach.png" in names
    with pytest.raises(FileNotFoundError):
        plan_entries([tmp_path / "missing"])


# --- against the real service -------------------------------------------------------------


@pytest.fixture(scope="module")
def live_client(api_server, workers) -> Iterator[Client]:
    with Client(api_server.url, retries=2, backoff_s=0.05) as client:
        yield client


@pytest.mark.integration
def test_folder_submit_wait_and_download_each_and_as_zip(live_client: Client, tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    sent: list[tuple[int, int]] = []
    job = live_client.submit(folder, on_upload=lambda done, total: sent.append((done, total)))
    assert job.status in ("queued", "running") and job.url.endswith(f"/v1/jobs/{job.id}")
    assert sent and sent[-1][0] == sent[-1][1] > 0

    seen: list[Job] = []
    job = live_client.wait(job.id, poll_s=0.1, timeout_s=WAIT_S, on_progress=seen.append)
    assert job.status == "partially_succeeded"
    assert (job.counts.total, job.counts.done, job.counts.failed) == (4, 3, 1)
    assert seen[-1] == job and all(not j.is_terminal for j in seen[:-1])
    done_counts = [j.counts.done for j in seen]
    assert done_counts == sorted(done_counts)

    items = {item.path: item for item in live_client.items(job.id)}
    assert set(items) == {"1990/summer/beach.png", "1990/snow.jpg", "cover.png", "notes.txt"}
    assert items["notes.txt"].status == "failed" and items["notes.txt"].error.code == "unsupported_format"
    assert items["notes.txt"].result_url is None

    files = live_client.download(job.id, tmp_path / "out")
    expected = {"1990/summer/beach.jpg", "1990/snow.jpg", "cover.jpg"}
    assert {f.relative_to(tmp_path / "out").as_posix() for f in files} == expected
    beach = cv2.imread(str(tmp_path / "out" / "1990/summer/beach.jpg"))
    assert beach.shape == (30, 40, 3)
    assert not list((tmp_path / "out").rglob("*.part"))

    [archive_path] = live_client.download(job.id, tmp_path / "zipped", as_zip=True)
    assert archive_path == tmp_path / "zipped" / f"{job.id}.zip"
    with zipfile.ZipFile(archive_path) as archive:
        assert set(archive.namelist()) == expected | {"manifest.json"}
        assert archive.read("cover.jpg") == (tmp_path / "out" / "cover.jpg").read_bytes()


@pytest.mark.integration
def test_submit_with_wait_then_list_and_delete(live_client: Client, tmp_path: Path) -> None:
    image = write_image(tmp_path / "portrait.png", 20, 24)
    job = live_client.submit(image, wait=30)
    assert job.status == "succeeded" and job.result_url == f"{live_client.base_url}/v1/jobs/{job.id}/items/0/result"
    broken = tmp_path / "torn.png"
    broken.write_bytes(image.read_bytes()[:60])
    other = live_client.submit(broken, wait=30)
    assert other.status == "failed" and other.result_url is None
    page = live_client.list_jobs(limit=1)
    assert [listed.id for listed in page.jobs] == [other.id] and page.next_cursor is not None
    after = live_client.list_jobs(limit=1, cursor=page.next_cursor)
    assert [listed.id for listed in after.jobs] == [job.id]
    failed = live_client.iter_jobs(status="failed", created_after=job.created_at, page_size=1)
    assert [listed.id for listed in failed] == [other.id]
    live_client.delete(job.id)
    for call in (live_client.job, live_client.delete):
        with pytest.raises(ClientError) as raised:
            call(job.id)
        assert (raised.value.status, raised.value.code) == (404, "not_found")
    assert job.id not in [listed.id for listed in live_client.list_jobs(limit=10).jobs]


@pytest.mark.integration
def test_presigned_uploads_single_put_and_multipart(api_server, workers, app_settings, tmp_path: Path) -> None:
    jobs = JobStore(redis.Redis.from_url(app_settings.redis_url), app_settings)
    image = write_image(tmp_path / "portrait.png", 20, 26)
    # Past the 5 MiB part size of the test settings: two parts.
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as archive:
        archive.write(image, "scans/portrait.png")
        archive.writestr("scans/padding.bin", np.random.default_rng(0).bytes(5 * 1024**2 + 300_000))
    with Client(api_server.url, retries=2, backoff_s=0.05, direct_upload_limit=0) as client:
        single = client.submit(image)
        sent: list[int] = []
        multi = client.submit(big, temperature=0.5, on_upload=lambda done, total: sent.append(done))
        single = client.wait(single.id, poll_s=0.1, timeout_s=WAIT_S)
        multi = client.wait(multi.id, poll_s=0.1, timeout_s=WAIT_S)
        multi_items = {item.path: item for item in client.items(multi.id)}
    for job in (single, multi):
        assert "/uploads/" in jobs.get(job.id).source_key  # created from an upload, not a form
    assert single.status == "succeeded" and single.source_filename == "portrait.png"
    assert sent[-1] == big.stat().st_size and sent == sorted(sent)
    assert multi.temperature == 0.5
    assert multi_items["scans/portrait.png"].status == "done"
    assert multi_items["scans/padding.bin"].error.code == "unsupported_format"


@pytest.mark.integration
def test_unknown_job_is_a_not_found_client_error(live_client: Client) -> None:
    with pytest.raises(ClientError) as raised:
        live_client.job("0" * 32)
    assert (raised.value.code, raised.value.status) == ("not_found", 404)


@pytest.mark.integration
def test_models_and_health(live_client: Client) -> None:
    models = live_client.models()
    assert [m.name for m in models if m.default] == [TEST_MODEL]
    health = live_client.health()
    assert health.ready and health.checks["workers"] >= 1


# --- retries, redirects and errors, against scripted servers ------------------------------


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: object, **headers: str) -> Reply:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Answers each (method, path) with its replies in turn, the last one from then on."""

    def __init__(self, script: dict[tuple[str, str], list[Reply]]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                owner.seen.append(Seen(self.command, path, dict(self.headers), body))
                replies = owner.script.get((self.command, path)) or [Reply(404)]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator:
    servers: list[ScriptedServer] = []

    def start(script: dict[tuple[str, str], list[Reply]]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def job_json(job_id: str, status: str = "queued") -> dict:
    return {
        "id": job_id,
        "status": status,
        "counts": {"total": 1, "done": 0, "failed": 0, "pending": 1},
        "expanded": True,
        "progress": 0.0,
        "model": "m",
        "links": {"self": f"/v1/jobs/{job_id}"},
    }


UNAVAILABLE = Reply.json(503, {"error": {"code": "unavailable", "message": "try later"}})


def test_idempotent_get_is_retried_after_503s(scripted) -> None:
    server = scripted({("GET", "/v1/jobs/j1"): [UNAVAILABLE, UNAVAILABLE, Reply.json(200, job_json("j1"))]})
    with Client(server.url, retries=3, backoff_s=0.01) as client:
        job = client.job("j1")
    assert job.id == "j1" and job.url == f"{server.url}/v1/jobs/j1"
    assert len(server.requests("GET", "/v1/jobs/j1")) == 3


def test_job_creation_is_retried_with_one_idempotency_key_and_the_whole_body(scripted, tmp_path: Path) -> None:
    server = scripted({("POST", "/v1/jobs"): [UNAVAILABLE, UNAVAILABLE, Reply.json(202, job_json("j2"))]})
    image = write_image(tmp_path / "one.png", 16, 12)
    with Client(server.url, retries=3, backoff_s=0.01) as client:
        job = client.submit(image, model="m", temperature=0.3)
    attempts = server.requests("POST", "/v1/jobs")
    assert job.id == "j2" and len(attempts) == 3
    assert len({a.headers["Idempotency-Key"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1  # the streamed body was rewound for each retry
    assert image.read_bytes() in attempts[0].body and b'name="temperature"\r\n\r\n0.3' in attempts[0].body


def test_output_options_are_sent_when_given(scripted, tmp_path: Path) -> None:
    output = {"format": "png", "quality": None, "max_side": 512}
    server = scripted({("POST", "/v1/jobs"): [Reply.json(202, {**job_json("j3"), "output": output})]})
    image = write_image(tmp_path / "one.png", 16, 12)
    with Client(server.url) as client:
        job = client.submit(image, format="png", max_side=512)
    (attempt,) = server.requests("POST", "/v1/jobs")
    assert b'name="format"\r\n\r\npng' in attempt.body and b'name="max_side"\r\n\r\n512' in attempt.body
    assert b'name="quality"' not in attempt.body
    assert job.output == Output("png", None, 512)


def test_non_idempotent_post_is_not_retried(scripted) -> None:
    server = scripted({("POST", "/v1/jobs/j3/cancel"): [UNAVAILABLE, Reply.json(200, job_json("j3", "canceled"))]})
    with Client(server.url, retries=3, backoff_s=0.01) as client, pytest.raises(ClientError) as raised:
        client.cancel("j3")
    assert (raised.value.code, raised.value.status) == ("unavailable", 503)
    assert len(server.requests("POST", "/v1/jobs/j3/cancel")) == 1


def test_429_waits_for_retry_after_then_reports_it(scripted) -> None:
    limited = Reply.json(429, {"error": {"code": "rate_limited", "message": "slow down"}}, **{"Retry-After": "1"})
    server = scripted({("GET", "/v1/models"): [limited]})
    started = time.monotonic()
    with Client(server.url, retries=1, backoff_s=0.01) as client, pytest.raises(ClientError) as raised:
        client.models()
    assert time.monotonic() - started >= 1.0  # the server's pause, not the 10 ms backoff
    assert (raised.value.code, raised.value.status, raised.value.retry_after) == ("rate_limited", 429, 1.0)
    assert len(server.requests("GET", "/v1/models")) == 2


def test_unreachable_api_is_a_connection_error() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01) as client,
        pytest.raises(ClientError) as raised,
    ):
        client.job("j4")
    assert raised.value.code == "connection_error" and raised.value.status is None


def item_json(index: int, output_path: str, job_id: str = "j5") -> dict:
    return {
        "index": index,
        "path": output_path,
        "output_path": output_path,
        "status": "done",
        "size": 3,
        "result_url": f"/v1/jobs/{job_id}/items/{index}/result",
        "error": None,
    }


def test_download_follows_redirect_to_storage_without_the_api_key(scripted, tmp_path: Path) -> None:
    storage = scripted({("GET", "/bucket/r0"): [Reply(200, b"jpeg-0")], ("GET", "/bucket/r1"): [Reply(200, b"jpeg-1")]})
    items_page = {
        "items": [item_json(0, "a/b/x.jpg"), item_json(1, "y.jpg")],
        "total": 2,
        "expanded": True,
        "next": None,
    }
    api = scripted(
        {
            ("GET", "/v1/jobs/j5/items"): [Reply.json(200, items_page)],
            ("GET", "/v1/jobs/j5/items/0/result"): [Reply(302, headers={"Location": f"{storage.url}/bucket/r0?sig=1"})],
            ("GET", "/v1/jobs/j5/items/1/result"): [Reply(302, headers={"Location": f"{storage.url}/bucket/r1?sig=1"})],
        }
    )
    downloaded: list[Item] = []
    with Client(api.url, api_key="secret-key", retries=1, backoff_s=0.01) as client:
        files = client.download("j5", tmp_path, on_item=lambda item, path: downloaded.append(item))
    assert files == [tmp_path / "a/b/x.jpg", tmp_path / "y.jpg"]
    assert [f.read_bytes() for f in files] == [b"jpeg-0", b"jpeg-1"]
    assert sorted(item.index for item in downloaded) == [0, 1]
    assert all(s.headers.get("Authorization") == "Bearer secret-key" for s in api.seen)
    assert storage.seen and not any("Authorization" in s.headers for s in storage.seen)


def test_result_paths_leaving_the_destination_are_refused(scripted, tmp_path: Path) -> None:
    page = {"items": [item_json(0, "../escape.jpg", "j6")], "total": 1, "expanded": True, "next": None}
    api = scripted({("GET", "/v1/jobs/j6/items"): [Reply.json(200, page)]})
    with Client(api.url, retries=0) as client, pytest.raises(ClientError) as raised:
        client.download("j6", tmp_path / "dest")
    assert raised.value.code == "unsafe_path"
    assert not (tmp_path / "escape.jpg").exists()


def test_items_follow_next_links(scripted) -> None:
    first = {
        "items": [item_json(0, "a.jpg", "j7")],
        "total": 2,
        "expanded": False,
        "next": "/v1/jobs/j7/items?offset=1&limit=1",
    }
    second = {"items": [item_json(1, "b.jpg", "j7")], "total": 2, "expanded": False, "next": None}
    api = scripted({("GET", "/v1/jobs/j7/items"): [Reply.json(200, first), Reply.json(200, second)]})
    with Client(api.url, retries=0) as client:
        assert [item.output_path for item in client.items("j7", page_size=1)] == ["a.jpg", "b.jpg"]
