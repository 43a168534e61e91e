"""Webhooks: address checks, signatures, the progress throttle, and deliveries end to end.

The end-to-end tests run a real API, a colorize worker and a webhook worker (threads pool)
against a local HTTP receiver that verifies every signature with the standardwebhooks library.
Loopback receivers need ``webhook_allow_private``; the checks that refuse them are tested too.
"""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import redis
import urllib3
from PIL import Image
from standardwebhooks.webhooks import Webhook

from api.app import create_app
from shared.errors import InvalidRequest
from shared.jobs.documents import COMPLETED, EVENTS, PROGRESS, STARTED
from shared.jobs.records import ItemResult, NewItem
from shared.jobs.store import JobStore
from shared.network.addresses import AddressPolicy, is_public_address
from shared.settings import Settings
from shared.webhooks.callback_urls import parse_callback_url, parse_events
from shared.webhooks.events import WebhookMessage, WebhookNotifier, WebhookSecrets
from tests.integration_fixtures import ApiServer, broker_idle, with_own_keys
from worker.webhook_delivery import deliver, retry_delay_s, sign

WAIT_S = 30
http = urllib3.PoolManager(retries=False)


# --- addresses ----------------------------------------------------------------------------

NON_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "::127.0.0.1",  # IPv4-compatible (deprecated form)
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_public_address(ip)
    assert not AddressPolicy().permits(ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_permitted(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_settings_open_private_ranges() -> None:
    allow_all = AddressPolicy.from_settings(Settings(webhook_allow_private=True))
    assert allow_all.permits(ipaddress.ip_address("127.0.0.1"))
    some = AddressPolicy.from_settings(Settings(webhook_allowed_networks="10.0.0.0/8, fd00::/8"))
    for allowed in ("10.1.2.3", "::ffff:10.1.2.3", "fd00::5"):
        assert some.permits(ipaddress.ip_address(allowed))
    for refused in ("192.168.1.1", "127.0.0.1", "::1"):
        assert not some.permits(ipaddress.ip_address(refused))
    with pytest.raises(ValueError):
        Settings(webhook_allowed_networks="10.0.0.0/33").validate()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://x/",
        "http:///nohost",
        "example.com/hook",
        "http://user:secret@example.com/",
        "http://example.com:99999/",
        "http://example.com/" + "x" * 2100,
        "",
        42,
    ],
)
def test_malformed_callback_urls_are_refused(url) -> None:
    with pytest.raises(InvalidRequest):
        parse_callback_url(url)


def test_callback_url_parts() -> None:
    target = parse_callback_url("https://[2606:4700::1]:8443/hooks/in?key=1#frag")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "2606:4700::1", 8443, "/hooks/in?key=1")
    assert target.host_header == "[2606:4700::1]:8443"
    assert parse_callback_url("http://hooks.example").host_header == "hooks.example"


def test_event_filters() -> None:
    assert parse_events(None) == EVENTS
    assert parse_events("completed, started") == (STARTED, COMPLETED)
    assert parse_events(["progress"]) == (PROGRESS,)
    for bad in ("finished", ["started", 3], {"a": 1}, ",", []):
        with pytest.raises(InvalidRequest):
            parse_events(bad)


# --- signatures ---------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # Published with the Standard Webhooks specification.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.integration
def test_tenant_secrets_are_made_once(redis_client) -> None:
    secrets = WebhookSecrets(redis_client, namespace="test-secrets")
    redis_client.delete(secrets.key("acme"), secrets.key("other"))
    first = secrets.get_or_create("acme")
    assert first.startswith("whsec_") and len(Webhook(first)._whsecret) == 32
    assert secrets.get_or_create("acme") == first
    assert secrets.get_or_create("other") != first
    assert secrets.rotate("acme") not in (first, secrets.get_or_create("other"))


def test_retry_delays_double_up_to_the_cap() -> None:
    settings = Settings(webhook_retry_base_s=5, webhook_retry_max_s=30)
    assert [retry_delay_s(n, settings) for n in range(1, 6)] == [5, 10, 20, 30, 30]
    # Never past half the visibility timeout, which would hand the waiting retry to a second worker.
    short = settings.with_overrides(visibility_timeout_s=24)
    assert [retry_delay_s(n, short) for n in range(1, 4)] == [5, 10, 12]


# --- a local receiver ---------------------------------------------------------------------


class Receiver:
    """An HTTP server on loopback that records every request; ``fail_first[path]`` requests to a
    path get 500, ``/redirect`` answers 302."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers.items()), body))
                    failures = receiver.fail_first.get(self.path, 0)
                    if failures:
                        receiver.fail_first[self.path] = failures - 1
                status = 500 if failures else 302 if self.path == "/redirect" else 204
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(headers, body) for p, headers, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def verified(secret: str, received: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], dict]]:
    """Each request's headers and body, after the signature check (raises on a bad one)."""
    return [(headers, Webhook(secret).verify(body, headers)) for headers, body in received]


def message(url: str, event: str = COMPLETED) -> WebhookMessage:
    body = json.dumps({"type": f"job.{event}", "timestamp": "2026-01-01T00:00:00.000Z", "data": {"id": "j1"}})
    return WebhookMessage(id=f"msg_j1_{event}", job_id="j1", tenant="local", event=event, url=url, body=body)


# --- one attempt --------------------------------------------------------------------------


def test_a_delivery_is_signed_and_sent_to_the_checked_address(receiver: Receiver) -> None:
    secret = "whsec_" + "QUJD" * 8
    # A name that resolves (here: by a stub) to loopback, allowed by the network list.
    resolver = lambda host, port: [ipaddress.ip_address("127.0.0.1")] if host == "hooks.example" else []
    settings = Settings(webhook_allowed_networks="127.0.0.0/8")
    url = f"http://hooks.example:{receiver.port}/direct?x=1"
    attempt = deliver(message(url), secret, 1, settings, resolver=resolver)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("delivered", 204, None)
    [(headers, payload)] = verified(secret, receiver.received("/direct?x=1"))
    assert headers["Host"] == f"hooks.example:{receiver.port}"
    assert headers["webhook-id"] == "msg_j1_completed" and headers["Content-Type"] == "application/json"
    assert payload["data"] == {"id": "j1"}


def test_a_name_that_now_resolves_inside_the_network_is_refused_at_delivery(receiver: Receiver) -> None:
    # DNS rebinding: the host passed the check at job creation, and now resolves to loopback.
    resolver = lambda host, port: [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")]
    before = len(receiver.requests)
    attempt = deliver(
        message(f"http://rebind.example:{receiver.port}/rebound"), "whsec_QUJD", 1, Settings(), resolver=resolver
    )
    assert attempt.outcome == "refused" and not attempt.retryable
    assert "127.0.0.1" in attempt.error
    assert len(receiver.requests) == before


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    settings = Settings(webhook_allow_private=True)
    attempt = deliver(message(receiver.url("/redirect")), "whsec_QUJD", 1, settings)
    assert (attempt.outcome, attempt.status_code) == ("failed", 302) and attempt.retryable
    assert receiver.received("/elsewhere") == []


def test_an_unreachable_receiver_is_a_failed_attempt() -> None:
    settings = Settings(webhook_allow_private=True, webhook_timeout_s=1)
    attempt = deliver(message("http://127.0.0.1:9/closed"), "whsec_QUJD", 2, settings)
    assert attempt.outcome == "failed" and attempt.attempt == 2 and attempt.status_code is None
    assert attempt.error


# --- events from job state changes --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.integration
def test_events_follow_the_job_throttled_and_completed_once(app_settings) -> None:
    settings = with_own_keys(app_settings).with_overrides(webhook_progress_interval_s=5, webhook_progress_step_pct=20)
    client = redis.Redis.from_url(settings.redis_url)
    clock = FakeClock()
    published: list[dict] = []
    notifier = WebhookNotifier(client, settings, published.append, clock=clock)
    jobs = JobStore(client, settings, clock=clock, listeners=(notifier,))
    job = jobs.create_job(
        tenant="local",
        model="m",
        temperature=None,
        source_kind="zip",
        source_key="k",
        callback_url="http://hooks.example/in",
        webhook_events=EVENTS,
    )
    jobs.add_items(job.id, [NewItem(i, f"{i}.png", f"{i}.jpg", 1) for i in range(10)])
    jobs.end_expansion(job.id)
    assert jobs.mark_running(job.id) and not jobs.mark_running(job.id)
    for index in range(10):  # one item each second
        clock.now += 1
        jobs.record(job.id, [ItemResult.done(index)])
        jobs.record(job.id, [ItemResult.done(index)])  # a redelivered task: counted once, no event
    events = [(m["event"], json.loads(m["body"])["data"]["progress"]) for m in published]
    # 20 % steps, at most one per 5 s: at 2/10 (t=2, the first step), then 7/10 (t=7, the next
    # one 5 s later); 10/10 is the completed event only.
    assert events == [(STARTED, 0.0), (PROGRESS, 0.2), (PROGRESS, 0.7), (COMPLETED, 1.0)]
    # Numbered in the order they happened, in the signed body and in the message.
    assert [json.loads(m["body"])["sequence"] for m in published] == [m["sequence"] for m in published] == [1, 2, 3, 4]
    ids = [m["id"] for m in published]
    assert len(set(ids)) == len(ids) and ids[-1] == f"msg_{job.id}_completed"
    body = json.loads(published[-1]["body"])
    assert body["type"] == "job.completed" and body["data"]["status"] == "succeeded"
    assert body["data"]["webhook"] == {"callback_url": "http://hooks.example/in", "events": list(EVENTS)}


@pytest.mark.integration
def test_jobs_without_a_callback_publish_nothing(app_settings) -> None:
    settings = with_own_keys(app_settings)
    connection = redis.Redis.from_url(settings.redis_url)
    published: list[dict] = []
    jobs = JobStore(connection, settings, listeners=(WebhookNotifier(connection, settings, published.append),))
    job = jobs.create_job(
        tenant="local",
        model="m",
        temperature=None,
        source_kind="image",
        source_key="k",
        single_item=NewItem(0, "a.png", "a.jpg", 1),
    )
    jobs.mark_running(job.id)
    jobs.record(job.id, [ItemResult.done(0)])
    assert jobs.get(job.id).status == "succeeded" and published == []


# --- job creation refuses non-public callbacks --------------------------------------------


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.linspace(0, 255, 24 * 16).reshape(16, 24).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def refusing_client(app_settings):
    return create_app(with_own_keys(app_settings)).test_client()  # no worker reads these keys


def post_job(client, **fields):
    form = {"file": (io.BytesIO(png_bytes()), "photo.png"), **fields}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "https://192.168.0.1/hook",
        "ftp://example.com/hook",
    ],
)
@pytest.mark.integration
def test_job_creation_refuses_non_public_callbacks(refusing_client, url: str) -> None:
    response = post_job(refusing_client, callback_url=url)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_request"
    assert response.json["error"]["details"]["field"] == "callback_url"


@pytest.mark.integration
def test_job_creation_checks_the_event_filter(refusing_client) -> None:
    response = post_job(refusing_client, callback_url="http://8.8.8.8/hook", events="started,finished")
    assert response.status_code == 400 and response.json["error"]["details"]["field"] == "events"
    response = post_job(refusing_client, events="started")
    assert response.status_code == 400 and "callback_url" in response.json["error"]["message"]


@pytest.mark.integration
def test_allowed_networks_admit_a_private_callback(app_settings) -> None:
    settings = with_own_keys(app_settings).with_overrides(webhook_allowed_networks="127.0.0.0/8")
    client = create_app(settings).test_client()
    response = post_job(client, callback_url="http://127.0.0.1:9/hook", events="completed")
    assert response.status_code == 202, response.json
    assert response.json["webhook"] == {"callback_url": "http://127.0.0.1:9/hook", "events": ["completed"]}
    assert post_job(client, callback_url="http://10.0.0.7/hook").status_code == 400


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hook_settings(app_settings):
    return with_own_keys(app_settings).with_overrides(
        webhook_allow_private=True,
        webhook_retry_base_s=0.2,
        webhook_retry_max_s=1.0,
        webhook_timeout_s=3,
        webhook_progress_interval_s=0,
        webhook_progress_step_pct=50,
    )


@pytest.fixture(scope="module")
def hook_api(hook_settings, start_worker) -> Iterator[str]:
    start_worker(hook_settings)
    start_worker(hook_settings, queues="webhooks", pool="threads", concurrency=4)
    server = ApiServer(hook_settings)
    yield server.url
    server.stop()


def submit(api: str, data: bytes, filename: str, **fields) -> dict:
    response = http.request("POST", f"{api}/v1/jobs", fields={"file": (filename, data), **fields})
    assert response.status == 202, response.data
    return json.loads(response.data)


def get_json(url: str) -> dict:
    response = http.request("GET", url)
    assert response.status == 200, response.data
    return json.loads(response.data)


def wait_for(condition, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def zip_of(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"scans/{i}.png", png_bytes())
    return buffer.getvalue()


@pytest.mark.integration
def test_started_progress_and_completed_arrive_signed(hook_api: str, hook_settings, receiver: Receiver) -> None:
    secret = get_json(f"{hook_api}/v1/webhook-secret")["secret"]
    job = submit(hook_api, zip_of(4), "four.zip", callback_url=receiver.url("/all"))
    assert job["webhook"] == {"callback_url": receiver.url("/all"), "events": list(EVENTS)}
    wait_for(lambda: any(json.loads(body)["type"] == "job.completed" for _, body in receiver.received("/all")))
    wait_for(lambda: broker_idle(hook_settings))  # then no delivery is left to arrive
    deliveries = verified(secret, receiver.received("/all"))
    types = [payload["type"] for _, payload in deliveries]
    # Delivered in the order they happened, each numbered so.
    assert types == ["job.started", "job.progress", "job.completed"]
    assert [payload["sequence"] for _, payload in deliveries] == [1, 2, 3]
    by_type = {payload["type"]: (headers, payload) for headers, payload in deliveries}
    # Chunks of two, 50 % steps: one progress event, when the first chunk is stored.
    assert by_type["job.progress"][1]["data"]["progress"] == 0.5
    assert by_type["job.started"][1]["data"]["status"] == "running"
    completed_headers, completed = by_type["job.completed"]
    assert completed_headers["webhook-id"] == f"msg_{job['id']}_completed"
    # The event carries the job exactly as the API shows it.
    assert completed["data"] == get_json(f"{hook_api}/v1/jobs/{job['id']}")
    assert completed["data"]["status"] == "succeeded" and completed["data"]["counts"]["done"] == 4
    log = get_json(f"{hook_api}/v1/jobs/{job['id']}/webhooks")
    assert sorted(d["event"] for d in log["deliveries"]) == ["completed", "progress", "started"]
    assert all(d["outcome"] == "delivered" and d["status_code"] == 204 and d["attempt"] == 1 for d in log["deliveries"])


@pytest.mark.integration
def test_only_the_chosen_events_are_sent(hook_api: str, hook_settings, receiver: Receiver) -> None:
    job = submit(hook_api, zip_of(2), "two.zip", callback_url=receiver.url("/completed-only"), events="completed")
    wait_for(lambda: receiver.received("/completed-only"))
    wait_for(lambda: broker_idle(hook_settings))  # then no delivery is left to arrive
    [(_, body)] = receiver.received("/completed-only")
    assert json.loads(body)["data"]["id"] == job["id"]


@pytest.mark.integration
def test_a_failing_receiver_gets_retries_until_it_answers(hook_api: str, receiver: Receiver) -> None:
    secret = get_json(f"{hook_api}/v1/webhook-secret")["secret"]
    receiver.fail_first["/flaky"] = 2
    job = submit(hook_api, png_bytes(), "one.png", callback_url=receiver.url("/flaky"), events="completed")
    log_url = f"{hook_api}/v1/jobs/{job['id']}/webhooks"
    log = wait_for(lambda: (log := get_json(log_url)) and len(log["deliveries"]) == 3 and log)
    attempts = [(d["attempt"], d["outcome"], d["status_code"]) for d in log["deliveries"]]
    assert attempts == [(1, "failed", 500), (2, "failed", 500), (3, "delivered", 204)]
    assert all(d["next_attempt_at"] for d in log["deliveries"][:2]) and log["deliveries"][2]["next_attempt_at"] is None
    received = verified(secret, receiver.received("/flaky"))
    assert len(received) == 3
    # One message: the same id on every attempt, each attempt signed on its own.
    assert {headers["webhook-id"] for headers, _ in received} == {f"msg_{job['id']}_completed"}
    assert len({json.dumps(payload, sort_keys=True) for _, payload in received}) == 1


@pytest.mark.integration
def test_deliveries_of_an_unknown_job_are_not_found(hook_api: str) -> None:
    response = http.request("GET", f"{hook_api}/v1/jobs/nope/webhooks")
    assert response.status == 404 and json.loads(response.data)["error"]["code"] == "not_found"


@pytest.mark.integration
def test_a_later_event_waits_for_an_earlier_one_being_retried(hook_api: str, receiver: Receiver) -> None:
    receiver.fail_first["/in-order"] = 2  # the started event fails twice before it is delivered
    job = submit(hook_api, png_bytes(), "one.png", callback_url=receiver.url("/in-order"), events="started,completed")
    wait_for(lambda: any(json.loads(body)["type"] == "job.completed" for _, body in receiver.received("/in-order")))
    arrived = [(json.loads(body)["type"], json.loads(body)["sequence"]) for _, body in receiver.received("/in-order")]
    # The job finished long before the started event got through; completed still came after it.
    assert arrived == [("job.started", 1)] * 3 + [("job.completed", 2)]
    log = get_json(f"{hook_api}/v1/jobs/{job['id']}/webhooks")
    assert [(d["event"], d["attempt"]) for d in log["deliveries"]] == [
        ("started", 1),
        ("started", 2),
        ("started", 3),
        ("completed", 1),
    ]
