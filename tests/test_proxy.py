"""docker/nginx.conf for real: nginx in front of the API under gunicorn (as in docker-compose.yml,
with loopback addresses for the compose names), on real Redis and SeaweedFS.

Skipped where nginx is not installed (.ci/run installs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis
import urllib3

from bench.fault_stack import ApiProcess
from cli.embedded_services import LOOPBACK, free_port
from shared.redis_keys import RedisKeys
from shared.setting_types import Quotas
from tests.integration_fixtures import with_own_keys
from tests.test_compose import NGINX_CONF

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
]

WRONG_KEY = {"Authorization": "Bearer ck_0123456789abcdef_" + "C" * 43}
http = urllib3.PoolManager(retries=False, timeout=10)


@pytest.fixture(scope="module")
def api(app_settings, tmp_path_factory):
    settings = with_own_keys(app_settings).with_overrides(
        api_host=LOOPBACK,
        api_port=free_port(),
        auth="keys",
        trusted_proxies="127.0.0.1/32",
        quotas=Quotas(auth_failures_per_s=0.01, auth_failure_burst=3),
    )
    # Every request through the proxy comes from loopback: its bucket of wrong keys starts full.
    redis.Redis.from_url(settings.redis_url).delete(RedisKeys().auth_failures(LOOPBACK))
    process = ApiProcess(settings, tmp_path_factory.mktemp("proxied-api") / "api.log").start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def proxy(api, tmp_path_factory):
    """nginx with docker/nginx.conf, its upstream and port moved to loopback; yields its base URL."""
    root = tmp_path_factory.mktemp("nginx")
    port = free_port()
    text = (
        NGINX_CONF.read_text()
        .replace("server api:8000;", f"server {LOOPBACK}:{api.settings.api_port};")
        .replace("listen 8000;", f"listen {LOOPBACK}:{port};")
        .replace("pid /tmp/nginx.pid;", f"pid {root}/nginx.pid;")
        .replace("access_log /dev/stdout;", f"access_log {root}/access.log;")
        .replace("error_log /dev/stderr warn;", f"error_log {root}/error.log warn;")
    )
    assert str(api.settings.api_port) in text and str(port) in text
    config = root / "nginx.conf"
    config.write_text(text)
    command = ["nginx", "-p", str(root), "-c", str(config), "-g", f"error_log {root}/error.log;"]
    subprocess.run(command, check=True, timeout=30)
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if http.request("GET", f"{url}/healthz").status == 200:
                break
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
    yield url
    subprocess.run([*command, "-s", "stop"], timeout=30, check=False)


def error_of(response, status: int) -> dict:
    assert response.status == status, response.data[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.data)["error"]


def test_the_api_answers_through_the_proxy(proxy) -> None:
    assert json.loads(http.request("GET", f"{proxy}/healthz").data) == {"status": "ok"}
    assert error_of(http.request("GET", f"{proxy}/v1/jobs/x"), 401)["code"] == "unauthorized"


def test_metrics_are_not_served_through_the_proxy(proxy) -> None:
    assert error_of(http.request("GET", f"{proxy}/metrics"), 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "method, path, options, status, code",
    [
        ("POST", "/v1/jobs", {"body": b"x" * (256 * 1024**2 + 1)}, 413, "payload_too_large"),
        ("GET", "/" + "a" * 5000, {}, 414, "uri_too_long"),
        ("GET", "/v1/models", {"headers": {"X-Big": "y" * 9000}}, 400, "invalid_request"),
    ],
)
def test_what_the_proxy_refuses_is_a_json_error(proxy, method, path, options, status, code) -> None:
    assert error_of(http.request(method, proxy + path, **options), status)["code"] == code


def test_a_malformed_request_line_is_a_json_error(proxy) -> None:
    host, port = proxy.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NOT A REQUEST\r\n\r\n")
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "invalid_request"


def test_a_client_cannot_choose_its_forwarded_address(proxy, api) -> None:
    # Through the proxy, a forged X-Forwarded-For is replaced by the address the proxy saw: every
    # request below is the same client, throttled after its burst of wrong keys.
    statuses = [
        http.request("GET", f"{proxy}/v1/jobs/x", headers={**WRONG_KEY, "X-Forwarded-For": f"192.0.2.{n}"}).status
        for n in range(1, 6)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    # The API believes the forwarded address from its trusted proxy's address (loopback here):
    # another client behind it still gets its own answer.
    other = {**WRONG_KEY, "X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    assert http.request("GET", f"{api.url}/v1/jobs/x", headers=other).status == 401
