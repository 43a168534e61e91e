"""The embedded services and the local stack, as real processes: persistence, settings hand-off, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from cli.embedded_services import RedisServer, free_port
from cli.local_stack import LocalStack, child_environment
from shared.errors import ServiceUnavailable
from shared.settings import PROJECT_ROOT, Settings
from shared.storage.object_store import Storage

pytestmark = pytest.mark.integration


def listening(url_or_port) -> bool:
    port = url_or_port if isinstance(url_or_port, int) else int(url_or_port.rsplit(":", 1)[1].split("/")[0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_keeps_writes_across_a_restart_and_never_evicts(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.rpush("queue", "task-1", "task-2")
        client.close()
    assert not listening(server.url)

    with RedisServer(tmp_path / "redis") as restarted:  # another port, the same data
        client = redis.Redis.from_url(restarted.url, decode_responses=True)
        assert client.lrange("queue", 0, -1) == ["task-1", "task-2"]
        client.close()


def test_a_service_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(ServiceUnavailable, match="exited"):
            server.start()
    assert not server.running
    assert "Address already in use" in server.log_path.read_text()


def test_local_stack_starts_missing_services_and_keeps_their_data(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path / "var", s3_bucket="colorize-stack")
    with LocalStack(base) as stack:
        settings = stack.settings
        assert settings.redis_url and settings.s3_endpoint_url
        Storage(settings).put_bytes("tenants/t/jobs/j/source", b"archive bytes")
        redis.Redis.from_url(settings.redis_url).set("colorize:job:{j}", "running")
    assert not listening(settings.redis_url)
    assert not listening(settings.s3_endpoint_url)

    with LocalStack(base) as stack:
        assert Storage(stack.settings).get_bytes("tenants/t/jobs/j/source") == b"archive bytes"
        assert redis.Redis.from_url(stack.settings.redis_url).get("colorize:job:{j}") == b"running"
        # The key of stored connections was made once, beside the data, for its owner only.
        key_file = tmp_path / "var" / "connection.key"
        assert stack.settings.connection_key == settings.connection_key == key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        stack.s3.stop(timeout_s=1)  # its data is thrown away: no need to wait out weed's graceful stop


def test_local_stack_starts_nothing_when_services_are_configured(service_settings: Settings) -> None:
    with LocalStack(service_settings) as stack:
        assert stack.redis is None and stack.s3 is None
        assert stack.settings == service_settings


def test_children_get_the_settings_and_not_the_callers_stale_variables() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:7000/0", s3_endpoint_url="http://127.0.0.1:7001", chunk_size=3)
    inherited = {
        "PATH": "/usr/bin",
        "REDIS_URL": "redis://elsewhere:6379/0",
        "COLORIZE_PUBLIC_URL": "http://stale.example",
        "S3_ENDPOINT_URL": "http://elsewhere:9000",
    }
    env = child_environment(settings, inherited)
    assert env["PATH"] == "/usr/bin"
    assert "REDIS_URL" not in env and "S3_ENDPOINT_URL" not in env
    assert Settings.from_env(env) == settings


def descendants(root: int) -> set[int]:
    """Every process below ``root`` in the process tree, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_serve_runs_api_and_worker_and_stops_all_on_ctrl_c(service_settings: Settings, tmp_path: Path) -> None:
    settings = service_settings.with_overrides(api_port=free_port(), data_dir=tmp_path)
    env = child_environment(settings, os.environ)
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli.local_stack", "--api-workers", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    # Drain the pipe all along: children that fill it would block on their next log line.
    reader = threading.Thread(target=lambda: output.extend(iter(serve.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("Colorize API at" in line for line in list(output)):
            assert time.monotonic() < deadline and serve.poll() is None, "".join(output)
            time.sleep(0.2)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        with urllib.request.urlopen(api_url + "/healthz", timeout=10) as response:
            assert response.status == 200
        # gunicorn with its worker, celery with its pool process (forked once the worker boots)
        while len(processes := descendants(serve.pid)) < 4:
            assert time.monotonic() < deadline, processes
            time.sleep(0.2)

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0, "".join(output)
        assert not listening(settings.api_port)
        assert not any(alive(pid) for pid in processes)
    finally:
        if serve.poll() is None:  # the test failed midway: let serve stop its children, then make sure
            serve.terminate()
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
