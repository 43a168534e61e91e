"""Fuzzing the HTTP API against its own OpenAPI description (schemathesis).

The API runs as in production, under gunicorn, on real Redis and SeaweedFS, open on loopback.
Schemathesis generates valid and invalid requests for every operation in
``/v1/openapi.json`` and checks every answer: no 5xx, a status, content type, headers and
body that the description allows, invalid input refused, and an answer within the timeout
(no hangs).

A modest number of examples per operation by default; more with e.g.::

    COLORIZE_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_api_fuzz.py
"""

from __future__ import annotations

import os
import socket

import pytest
import schemathesis
import urllib3
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from api.openapi.document import build_spec
from api.serving import REFUSED_BY_SERVER
from bench.fault_stack import ApiProcess
from cli.embedded_services import LOOPBACK, free_port
from shared.setting_types import Limits, Quotas
from shared.settings import Settings
from tests.integration_fixtures import with_own_keys

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("COLORIZE_FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT_S = 15
LIMITS = Limits(max_request_bytes=2 * 1024**2, max_upload_bytes=64 * 1024**2)
# Quotas off: a 429 after the first few hundred requests would hide the rest of the API.
QUOTAS = Quotas(max_jobs_in_flight=0, max_images_per_day=0, requests_per_s=0, request_burst=0)

# The description depends only on settings fixed here, so it is built before the server runs
# (schemathesis makes one test per operation at collection time);
# test_the_fuzzed_description_is_the_served_one checks that the server serves exactly this.
DESCRIPTION = build_spec(Settings(limits=LIMITS, quotas=QUOTAS))
schema = schemathesis.openapi.from_dict(DESCRIPTION)


@pytest.fixture(scope="module")
def fuzz_api(app_settings, start_worker, tmp_path_factory):
    settings = with_own_keys(app_settings).with_overrides(
        api_host=LOOPBACK, api_port=free_port(), limits=LIMITS, quotas=QUOTAS
    )
    start_worker(settings)  # a worker of its own: /readyz is ready, and jobs the fuzzer makes run
    api = ApiProcess(settings, tmp_path_factory.mktemp("fuzz-api") / "api.log").start()
    yield api
    api.kill()


def test_the_fuzzed_description_is_the_served_one(fuzz_api: ApiProcess) -> None:
    response = urllib3.request("GET", f"{fuzz_api.url}/v1/openapi.json")
    assert response.status == 200 and response.json() == DESCRIPTION


def accepts_valid_requests(ctx, response, case):
    """positive_data_acceptance, but for refusals a description cannot express: a callback host,
    connection endpoint or source URL that does not resolve to a public address (DNS decides),
    events without a callback URL or a quality for png (rules between fields), a file that is
    neither an image nor an archive, or hints with an archive (its content decides), a model that is not installed (the
    server decides), a listing cursor the server did not give out, a ``Prefer`` header whose wait
    preference is out of bounds (a rule inside a header's list of preferences, which a schema
    cannot state). And a request the HTTP server itself refuses before the app sees it
    (gunicorn's 400, as JSON marked ``refused_by``, e.g. for a
    ``CONTENT-LENGTH`` header schemathesis adds beside the one its HTTP client sends)."""
    if response.status_code in (415, 422):
        return None
    if response.status_code == 400:
        content_type = next((v[0] for k, v in response.headers.items() if k.lower() == "content-type"), "")
        assert content_type.startswith("application/json"), response.content
        details = (response.json().get("error") or {}).get("details") or {}
        fields = ("callback_url", "events", "quality", "cursor", "Prefer", "endpoint_url", "source.urls", "hints")
        if details.get("field") in fields or details == REFUSED_BY_SERVER:
            return None
    return positive_data_acceptance(ctx, response, case)


def refuses_invalid_requests(ctx, response, case):
    """negative_data_rejection, with 413 and 414 among the refusals (a body or a request line
    over its limit, as the description says), and for invalid data a form can carry."""
    if response.status_code in (413, 414) or form_cannot_carry(case):
        return None
    return negative_data_rejection(ctx, response, case)


def form_cannot_carry(case) -> bool:
    """A multipart form has no arrays, objects or nulls: schemathesis sends those as repeated,
    flattened or missing fields, which can make a valid request of an invalid case (an empty
    array for ``temperature`` sends no temperature at all). And an empty field counts as left
    out, as the description says."""
    return (
        case.media_type == "multipart/form-data"
        and isinstance(case.body, dict)
        and any(value is None or value == "" or isinstance(value, (list, dict)) for value in case.body.values())
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_api_answers_every_request_as_described(case, fuzz_api: ApiProcess) -> None:
    # Open on loopback: requests act as the local tenant without a key, so a made-up key is not
    # refused, as intended (tests/test_auth.py covers keys).
    case.call_and_validate(
        base_url=fuzz_api.url,
        timeout=REQUEST_TIMEOUT_S,
        excluded_checks=[ignored_auth, positive_data_acceptance, negative_data_rejection],
        additional_checks=[accepts_valid_requests, refuses_invalid_requests],
    )


# --- what schemathesis does not send --------------------------------------------------------


def raw_request(api: ApiProcess, data: bytes) -> bytes:
    """Send ``data`` as is and return what the server answers before it closes."""
    with socket.create_connection((api.settings.api_host, api.settings.api_port), timeout=REQUEST_TIMEOUT_S) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_huge_headers_are_refused_without_a_server_error(fuzz_api: ApiProcess) -> None:
    one_huge = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * 1_000_000 + b"\r\n\r\n"
    assert 400 <= status_of(raw_request(fuzz_api, one_huge)) < 500
    many = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10_000)) + b"\r\n"
    assert 400 <= status_of(raw_request(fuzz_api, many)) < 500
    # The server is still there.
    assert status_of(raw_request(fuzz_api, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200


def test_a_body_longer_than_the_limit_without_length_is_cut_off(fuzz_api: ApiProcess) -> None:
    boundary = b"xyz"
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n"
    )
    part = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\n'
        + b"\0" * (3 * 1024**2)
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    chunked = b"%x\r\n" % len(part) + part + b"\r\n0\r\n\r\n"
    assert status_of(raw_request(fuzz_api, head + chunked)) == 413


@pytest.mark.parametrize(
    "line",
    [
        b"GET /v1/jobs/%00/items HTTP/1.1",
        b"GET /v1/jobs/..%2f..%2fetc%2fpasswd HTTP/1.1",
        b"GET /v1/jobs/\xff\xfe/items?offset=\xff HTTP/1.1",
        b"GET /v1/jobs/" + b"a" * 5000 + b" HTTP/1.1",
        b"POST /v1/uploads/%2e%2e/complete HTTP/1.1",
    ],
)
def test_hostile_request_lines_get_client_errors(fuzz_api: ApiProcess, line: bytes) -> None:
    answer = raw_request(fuzz_api, line + b"\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert 400 <= status_of(answer) < 500, answer[:300]


def test_form_parts_without_a_name_are_ignored_with_an_idempotency_key(fuzz_api: ApiProcess) -> None:
    # Found by the fuzzer: a nameless part (its name reads as None) broke the request's fingerprint.
    body = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n\r\n'
        b"--b\r\nContent-Disposition: form-data\r\n\r\nno name\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nnot an image\r\n--b--\r\n'
    )
    response = urllib3.request(
        "POST",
        f"{fuzz_api.url}/v1/jobs",
        body=body,
        headers={"Content-Type": "multipart/form-data; boundary=b", "Idempotency-Key": "nameless-part"},
    )
    assert response.status == 415, response.data  # the file is refused for what it is
