"""The API as ``./scripts/serve`` runs it (gunicorn configured by ``api/serving.py``) against slow and
malformed clients: ``/healthz`` keeps answering while 200 connections hang half-sent, and what
gunicorn refuses itself comes back as the API's JSON error body.

Runs ``bench/slow_clients.py``'s attack for a few seconds: only loopback addresses are used.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from bench.fault_stack import ApiProcess
from bench.slow_clients import Attack, probe
from cli.embedded_services import LOOPBACK, free_port
from tests.integration_fixtures import with_own_keys

pytestmark = pytest.mark.integration

HALF_SENT = 200
ATTACK_S = 6.0
HEALTHZ_LIMIT_S = 1.0


@pytest.fixture(scope="module")
def served_api(app_settings, tmp_path_factory):
    settings = with_own_keys(app_settings).with_overrides(api_host=LOOPBACK, api_port=free_port())
    api = ApiProcess(settings, tmp_path_factory.mktemp("slow-clients") / "api.log").start()
    yield api
    api.kill()


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_healthz_answers_within_a_second_while_200_connections_hang_half_sent(served_api) -> None:
    port = served_api.settings.api_port
    latencies = []
    with Attack(port, HALF_SENT) as attack:
        assert attack.held == HALF_SENT
        end = time.monotonic() + ATTACK_S
        while time.monotonic() < end:
            latencies.append(probe(port))
            time.sleep(0.1)
        held = attack.held
    assert held >= HALF_SENT * 0.9  # the attack stood the whole time
    assert None not in latencies, f"{latencies.count(None)} of {len(latencies)} /healthz probes failed"
    assert max(latencies) < HEALTHZ_LIMIT_S, max(latencies)


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"NOT A REQUEST\r\n\r\n", 400, "invalid_request"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150)) + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
    ],
)
def test_what_gunicorn_refuses_is_a_json_error(served_api, request_bytes, status, code) -> None:
    answered, headers, body = raw_exchange(served_api.settings.api_port, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["details"] == {"refused_by": "http_server"}


def test_no_control_socket_is_shared_between_instances(served_api) -> None:
    # gunicorn's default control socket is one path per user: every instance on the host would share it.
    log = served_api.log_path.read_text()
    assert "Listening at" in log and "Control socket listening" not in log
