"""Real service processes for integration tests: Celery workers as subprocesses, the API on a port.

A plugin (``pytest_plugins`` in ``tests/conftest.py``) that builds on the Redis and SeaweedFS
fixtures there; every process gets its settings through ``COLORIZE_*`` environment variables, as
in production.

All tests share one Redis database. The session's workers and API use the keys as production
does; a test or module that needs a broker and job state of its own takes ``with_own_keys``:
workers and APIs built from those settings see only each other.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from werkzeug.serving import make_server

from api.app import create_app
from cli.embedded_rabbitmq import RabbitMQServer, rabbitmq_available
from cli.worker_process import WorkerProcess
from shared.jobs.upkeep import WorkerHeartbeats
from shared.metrics import queue_depth
from shared.queue.contract import QUEUE, WEBHOOK_QUEUE
from shared.setting_types import Limits
from shared.settings import Settings
from tests.model_builder import build_test_model

TEST_MODEL = "test-tiny"
HINT_TEST_MODEL = "test-hints"
# kombu's hash of the messages workers hold unacknowledged (its transport option ``unacked_key``).
UNACKED_KEY = "unacked"

T = TypeVar("T")


def with_own_keys(settings: Settings) -> Settings:
    """The same Redis database under a fresh key prefix: a broker and job state of its own, which
    no other test's workers or API see."""
    return settings.with_overrides(redis_key_prefix=f"test-{uuid.uuid4().hex[:12]}:")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """``condition()``'s first true value, polled until ``timeout_s`` have passed; then AssertionError."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting until {what}"
        time.sleep(0.05)
    return value


def broker_idle(settings: Settings) -> bool:
    """Whether no task of ``settings``' broker waits in a queue or is held by a worker: nothing
    more will happen until something new is enqueued. Checked twice, a moment apart, so that a
    message between its pop and its record as unacknowledged (two commands) is not missed."""
    client = redis.Redis.from_url(settings.redis_url)
    prefix = settings.redis_key_prefix
    try:
        for check in range(2):
            if check:
                time.sleep(0.1)
            if (
                queue_depth(client, QUEUE, prefix)
                or queue_depth(client, WEBHOOK_QUEUE, prefix)
                or client.hlen(prefix + UNACKED_KEY)
            ):
                return False
        return True
    finally:
        client.close()


class ApiServer:
    """The Flask app on a free port, served by werkzeug in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="session")
def test_models_dir(tmp_path_factory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    build_test_model(models_dir, TEST_MODEL)
    return models_dir


@pytest.fixture(scope="session")
def app_settings(service_settings: Settings, test_models_dir: Path) -> Settings:
    """Service settings sized for tests: the tiny model, small chunks, quick redelivery."""
    return service_settings.with_overrides(
        models_dir=test_models_dir,
        model=TEST_MODEL,
        engine_threads=1,
        device="cpu",  # "auto" would import torch in every pool process only to find no GPU
        batch_size=2,
        chunk_size=2,
        task_soft_time_limit_s=3,
        task_time_limit_s=4,
        visibility_timeout_s=5,
        item_max_attempts=2,
        multipart_part_bytes=5 * 1024**2,  # the smallest part S3 (and SeaweedFS) accepts
        limits=Limits(max_request_bytes=2 * 1024**2, max_upload_bytes=12 * 1024**2, max_pixels=4_000_000),
    )


@pytest.fixture(scope="session")
def start_worker(tmp_path_factory) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker subprocesses (waits until each records its heartbeat); all stopped at session end."""
    log_dir = tmp_path_factory.mktemp("worker-logs")
    started: list[WorkerProcess] = []

    def start(
        settings: Settings, count: int = 1, extra_modules: tuple[str, ...] = (), **options
    ) -> list[WorkerProcess]:
        """``options``: ``queues``, ``pool``, ``concurrency`` of :class:`WorkerProcess`."""
        workers = [
            WorkerProcess(settings, f"w{len(started) + i}", log_dir, extra_modules, **options) for i in range(count)
        ]
        started.extend(workers)
        heartbeats = WorkerHeartbeats(redis.Redis.from_url(settings.redis_url), namespace=settings.redis_namespace)
        for worker in workers:
            worker.wait_ready(heartbeats)
        return workers

    yield start
    for worker in started:
        worker.request_stop()
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def workers(app_settings: Settings, start_worker) -> list[WorkerProcess]:
    """Two workers shared by the end-to-end tests."""
    return start_worker(app_settings, count=2)


@pytest.fixture(scope="session")
def rabbitmq_server(tmp_path_factory) -> Iterator[RabbitMQServer]:
    """A RabbitMQ node of the session's own (skips where RabbitMQ is not installed)."""
    reason = rabbitmq_available()
    if reason:
        pytest.skip(reason)
    with RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


@pytest.fixture
def rabbit_settings(app_settings: Settings, rabbitmq_server: RabbitMQServer) -> Iterator[Settings]:
    """``app_settings`` with tasks on RabbitMQ, in a virtual host of the test's own (removed
    afterwards, its queues with it), and job state under keys of its own."""
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    yield with_own_keys(app_settings).with_overrides(broker_url=rabbitmq_server.add_vhost(vhost))
    rabbitmq_server.delete_vhost(vhost)


@pytest.fixture(scope="session")
def api_server(app_settings: Settings) -> Iterator[ApiServer]:
    server = ApiServer(app_settings)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hint_settings(app_settings: Settings, tmp_path_factory) -> Settings:
    """Keys of their own and a models directory with the tiny model and its hint-taking twin
    (built on it), the default: for colour hints from every kind of client."""
    models_dir = tmp_path_factory.mktemp("hint-models")
    plain = build_test_model(models_dir, TEST_MODEL)
    build_test_model(models_dir, HINT_TEST_MODEL, hints=True, base=plain)
    return with_own_keys(app_settings).with_overrides(models_dir=models_dir, model=HINT_TEST_MODEL)


@pytest.fixture(scope="session")
def hint_api_server(hint_settings: Settings, start_worker) -> Iterator[ApiServer]:
    """An API server of ``hint_settings``, with a worker of its own."""
    start_worker(hint_settings)
    server = ApiServer(hint_settings)
    yield server
    server.stop()


def drip(handler: BaseHTTPRequestHandler, every_s: float, count: int = 1000) -> None:
    """Answer ``count`` bytes, one every ``every_s``, until the reader hangs up (a source too
    slow to finish): the reader sends nothing else, so anything readable is its close."""
    try:
        for _ in range(count):
            handler.wfile.write(b"\x89")
            handler.wfile.flush()
            readable, _, _ = select.select([handler.connection], [], [], every_s)
            if readable and handler.connection.recv(1, socket.MSG_PEEK) == b"":
                return
    except OSError:  # the reader hung up mid-write
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port, serving ``handler``; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
