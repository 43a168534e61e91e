"""What a hostile tenant can send, against real Redis and SeaweedFS: never a 5xx, names cleaned,
the storage quota, uploads held to their declared size, wrong keys throttled per address,
forwarded headers believed from trusted proxies only, results.zip only of finished jobs, and
metric labels from a fixed set.

No worker consumes this module's Redis database, so submitted jobs stay where the API left them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import unicodedata
import uuid
import zipfile

import pytest
import urllib3

from api.app import create_app
from api.bodies import MAX_JSON_DEPTH
from shared.jobs.entry_names import MAX_NAME_PART_BYTES, clean_path
from shared.jobs.records import ItemResult
from shared.setting_types import Quotas
from shared.storage.object_keys import result_key, source_key, upload_key
from shared.tenancy.storage_quota import job_owner, upload_owner
from tests.integration_fixtures import with_own_keys
from tests.test_api import png_bytes

pytestmark = pytest.mark.integration

PUBLIC_PEER = "203.0.113.7"
ODD_STRINGS = [
    "\x00",
    "a\r\nb",
    "\u202egnp.exe",
    "x" * 5000,
    "../..",
    ".",
    " ",
    "é" * 3000,
    "%00",
    "a/b\\c",
    "\U0001f600" * 100,
    "\x7f\x85\u2028",
    "C:\\evil",
    "CON",
    "a" * 70,
]


@pytest.fixture(scope="module")
def hostile_settings(app_settings):
    return with_own_keys(app_settings)


@pytest.fixture(scope="module")
def app(hostile_settings):
    return create_app(hostile_settings)


@pytest.fixture
def client(app):
    return app.test_client()


def submit(client, data: bytes, filename: str = "photo.png", headers=None, **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post("/v1/jobs", data=form, content_type="multipart/form-data", headers=headers)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.data[:300]
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]


# --- no 5xx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, extra", [("/v1/jobs", {}), ("/v1/uploads", {}), ("/v1/jobs", {"Idempotency-Key": "deep-1"})]
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_deeply_nested_json_is_400(client, path, extra, depth) -> None:
    body = '{"upload_id": "x", "size": 1, "x": ' + "[" * depth + "]" * depth + "}"
    error = error_of(client.post(path, data=body, content_type="application/json", headers=extra), 400)
    assert error["code"] == "invalid_request" and error["details"]["limit"] == MAX_JSON_DEPTH


def test_json_nested_within_the_bound_is_read(client) -> None:
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    response = client.post("/v1/uploads", data='{"size": 5, "x": ' + nested + "}", content_type="application/json")
    assert response.status_code == 201


@pytest.mark.parametrize("model", ["m" * 300, "a\x00b", "../" * 100, "x/y", ".hidden", "é" * 50])
def test_odd_model_names_are_not_found(client, model) -> None:
    error = error_of(submit(client, png_bytes(), model=model), 422)
    assert error["code"] == "model_not_found" and len(error["message"]) < 200


def test_odd_strings_in_every_field_never_get_a_5xx(client) -> None:
    upload = client.post("/v1/uploads", json={"size": 3}).get_json()["upload_id"]
    for odd in ODD_STRINGS:
        segment = odd.replace("/", "_") or "x"
        header_safe = odd.replace("\r\n", "_").encode("utf-8", "surrogatepass").decode("latin-1")
        responses = [
            submit(client, png_bytes(), filename=odd, model=odd or "x"),
            submit(client, png_bytes(), events=odd, callback_url="https://example.com/" + odd),
            client.post("/v1/uploads", json={"size": 10, "filename": odd}),
            client.post("/v1/jobs", json={"upload_id": odd or "x", "filename": odd, "model": odd, "events": odd}),
            client.post("/v1/jobs", json={"upload_id": upload, "callback_url": odd}),
            client.post("/v1/jobs", json={"upload_id": upload}, headers={"Idempotency-Key": header_safe}),
            client.get(f"/v1/jobs/{segment}"),
            client.get(f"/v1/jobs/{segment}/items?offset={segment}"),
            client.post(f"/v1/uploads/{segment}/complete", json={"parts": [{"part_number": 1, "etag": odd}]}),
            client.get("/v1/jobs/x", headers={"Authorization": header_safe, "X-API-Key": header_safe}),
        ]
        for response in responses:
            assert response.status_code < 500 and response.is_json, (
                odd[:20],
                response.status_code,
                response.data[:200],
            )


@pytest.mark.parametrize("query", ["offset=99999999999999999999999", "limit=1&offset=9223372036854775807"])
def test_huge_numbers_never_get_a_5xx(client, query) -> None:
    job = submit(client, png_bytes()).get_json()
    assert client.get(f"/v1/jobs/{job['id']}/items?{query}").status_code < 500
    assert client.get(f"/v1/jobs/{job['id']}/items/99999999999999999999999/result").status_code == 404
    assert client.post("/v1/uploads", json={"size": 10**30}).status_code == 413


THOUSANDS_OF_DIGITS = "9" * 5000  # past what int() converts (4300 digits)


def test_numbers_of_thousands_of_digits_are_400_never_5xx(client) -> None:
    job = submit(client, png_bytes()).get_json()
    refused = {
        "Prefer": submit(client, png_bytes(), headers={"Prefer": f"wait={THOUSANDS_OF_DIGITS}"}),
        "offset": client.get(f"/v1/jobs/{job['id']}/items?offset={THOUSANDS_OF_DIGITS}"),
        "limit": client.get(f"/v1/jobs?limit={THOUSANDS_OF_DIGITS}"),
        "quality": submit(client, png_bytes(), quality=THOUSANDS_OF_DIGITS),
    }
    for field, response in refused.items():
        error = error_of(response, 400)
        assert error["details"]["field"] == field and len(error["message"]) < 200, error
    big_json = '{"size": ' + THOUSANDS_OF_DIGITS + "}"
    assert client.post("/v1/uploads", data=big_json, content_type="application/json").status_code == 400


def test_an_unknown_status_filter_is_400_listing_the_plain_values(client) -> None:
    error = error_of(client.get("/v1/jobs?status=finished"), 400)
    assert error["details"] == {"field": "status"}
    assert "'queued', 'running', " in error["message"] and "JobStatus" not in error["message"], error["message"]


@pytest.fixture(scope="module")
def small_json_client(hostile_settings):
    limits = dataclasses.replace(hostile_settings.limits, max_json_bytes=4096)
    return create_app(hostile_settings.with_overrides(limits=limits)).test_client()


def test_a_json_body_over_its_bound_is_413_before_it_is_parsed(small_json_client) -> None:
    padding = {"filename": "photo.png", "size": 10, "x": "p" * 5000}
    error = error_of(small_json_client.post("/v1/uploads", json=padding), 413)
    assert error["code"] == "payload_too_large" and error["details"] == {"limit": 4096}
    # Of no declared size (chunked), it is read up to the bound and no further.
    body = json.dumps(padding).encode()
    chunked = small_json_client.post(
        "/v1/uploads",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert error_of(chunked, 413)["details"] == {"limit": 4096}
    # Under the bound, the same request is served; multipart uploads keep their own, larger one.
    assert small_json_client.post("/v1/uploads", json={**padding, "x": "p" * 100}).status_code == 201
    assert submit(small_json_client, png_bytes() + b"\0" * 8192).status_code == 202


# --- many requests at once ----------------------------------------------------------------------


def get_while_redis_is_busy(app, path: str, busy_s: float) -> tuple[object, float]:
    """GET ``path`` while every connection of the app's Redis pool is held, one of them given back
    after ``busy_s``; the response and how long it took."""
    pool = app.extensions["colorize"].redis.connection_pool
    held = [pool.get_connection() for _ in range(pool.max_connections)]
    answered: list[tuple[object, float]] = []

    def request() -> None:
        started = time.monotonic()
        response = app.test_client().get(path)
        answered.append((response, time.monotonic() - started))

    thread = threading.Thread(target=request)
    try:
        thread.start()
        time.sleep(busy_s)
        pool.release(held.pop())
        thread.join(30)
    finally:
        for connection in held:
            pool.release(connection)
    [outcome] = answered
    return outcome


def test_a_request_beyond_the_redis_pool_waits_for_a_connection_and_is_served(client, app) -> None:
    job = submit(client, png_bytes()).get_json()
    response, took_s = get_while_redis_is_busy(app, f"/v1/jobs/{job['id']}", busy_s=0.5)
    assert response.status_code == 200, response.get_json()
    assert took_s >= 0.4  # it waited for the connection given back


def test_a_request_that_finds_no_connection_within_the_wait_is_503_with_retry_after(hostile_settings) -> None:
    app = create_app(hostile_settings.with_overrides(api_redis_connections=2, api_redis_wait_s=0.3))
    response, took_s = get_while_redis_is_busy(app, "/v1/jobs?limit=1", busy_s=1.0)
    error = error_of(response, 503)
    assert error["code"] == "unavailable" and response.headers["Retry-After"] == "2"
    assert 0.3 <= took_s < 1.0


# --- names ----------------------------------------------------------------------------------------


def item_of(client, job: dict) -> dict:
    [item] = client.get(f"/v1/jobs/{job['id']}/items").get_json()["items"]
    return item


def assert_clean(name: str) -> None:
    assert name and "/" not in name
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs") for c in name), ascii(name)
    assert len(name.encode()) <= MAX_NAME_PART_BYTES + len(".jpg")


@pytest.mark.parametrize("filename", [".", "..", "/", " ", "\u202e"])
def test_an_image_with_no_usable_name_is_called_image(client, filename) -> None:
    response = submit(client, png_bytes(), filename=filename)
    assert response.status_code == 202, response.data
    item = item_of(client, response.get_json())
    assert (item["path"], item["output_path"]) == ("image", "image.jpg")


# In a form's file name (a multipart header) CR, LF and backslashes cannot travel as such; in
# an upload's JSON name they can.
@pytest.mark.parametrize(
    "filename", ["scan\x00\x1b[31m\u202egnp.png", "x" * 5000 + ".png", "dir/../a\tb.png", "\u200bzero\ufeffwidth.png"]
)
def test_single_image_names_are_cleaned_as_archive_entries_are(client, filename) -> None:
    job = submit(client, png_bytes(), filename=filename).get_json()
    item = item_of(client, job)
    assert_clean(item["path"])
    assert_clean(item["output_path"])
    assert item["path"] == clean_path(filename).rsplit("/", 1)[-1] == job["source"]["filename"]
    assert item["path"].endswith(".png") and item["output_path"] == item["path"][:-4] + ".jpg"


@pytest.mark.parametrize(
    "filename, path",
    [
        ("a\r\nb.png", "ab.png"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("\u202e" + "y" * 400 + ".png", "y" * 196 + ".png"),
    ],
)
def test_upload_names_are_cleaned_too(client, filename, path) -> None:
    data = png_bytes()
    upload = client.post("/v1/uploads", json={"size": len(data), "filename": filename}).get_json()
    assert urllib3.request("PUT", upload["url"], body=data).status == 200
    job = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]}).get_json()
    assert item_of(client, job)["path"] == path == job["source"]["filename"]


def test_lone_surrogates_in_json_are_400(client) -> None:
    for body in (
        '{"upload_id": "\\ud800"}',
        '{"upload_id": "x", "filename": "a\\udfffb.png"}',
        '{"upload_id": "x", "\\ud800": 1}',
    ):
        error = error_of(client.post("/v1/jobs", data=body, content_type="application/json"), 400)
        assert error["code"] == "invalid_request"


def test_an_upload_named_dot_becomes_a_job(client) -> None:
    data = png_bytes()
    upload = client.post("/v1/uploads", json={"size": len(data), "filename": "."}).get_json()
    assert urllib3.request("PUT", upload["url"], body=data).status == 200
    response = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]})
    assert response.status_code == 202, response.data
    assert item_of(client, response.get_json())["output_path"] == "image.jpg"


# --- results.zip --------------------------------------------------------------------------------


def test_results_zip_is_served_once_the_job_has_finished(client, app) -> None:
    job = submit(client, png_bytes(), filename="one.png").get_json()
    error = error_of(client.get(f"/v1/jobs/{job['id']}/results.zip"), 409)
    assert error["code"] == "conflict" and error["details"]["status"] == "queued"
    svc = app.extensions["colorize"]
    svc.jobs.mark_running(job["id"])
    assert client.get(f"/v1/jobs/{job['id']}/results.zip").status_code == 409
    svc.storage.put_bytes(result_key("local", job["id"], 0), b"\xff\xd8\xff fake jpeg")
    svc.jobs.record(job["id"], [ItemResult.done(0)])
    response = client.get(f"/v1/jobs/{job['id']}/results.zip")
    assert response.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(response.data)).namelist() == ["one.jpg", "manifest.json"]


# --- metrics --------------------------------------------------------------------------------------


def test_metric_labels_come_from_a_fixed_set_of_methods(client) -> None:
    token = f"BREW{uuid.uuid4().hex[:8].upper()}"
    assert client.open("/v1/jobs", method=token).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert token not in text
    assert 'method="other"' in text


# --- storage quota --------------------------------------------------------------------------------


@pytest.fixture
def keyed(hostile_settings):
    """An app requiring keys with a small storage quota; a fresh tenant and its headers."""
    app = create_app(hostile_settings.with_overrides(auth="keys", quotas=Quotas(max_stored_bytes=6000)))
    svc = app.extensions["colorize"]
    tenant = f"h-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {svc.keys.create(tenant).token}"}
    return app.test_client(), svc, tenant, headers


def assert_storage_refused(response) -> dict:
    error = error_of(response, 429)
    assert error["code"] == "quota_exceeded" and error["details"]["quota"] == "stored_bytes"
    assert response.headers["Retry-After"] == str(error["details"]["retry_after_s"])
    return error


def test_uploads_reserve_their_declared_size_against_the_storage_quota(keyed) -> None:
    client, svc, tenant, headers = keyed
    first = client.post("/v1/uploads", json={"size": 4000}, headers=headers)
    assert first.status_code == 201
    assert svc.stored.used(tenant) == 4000  # in flight: nothing uploaded yet
    error = assert_storage_refused(client.post("/v1/uploads", json={"size": 2001}, headers=headers))
    assert (error["details"]["used"], error["details"]["limit"], error["details"]["requested"]) == (4000, 6000, 2001)
    assert client.post("/v1/uploads", json={"size": 2000}, headers=headers).status_code == 201
    # A sent file is refused before it is stored: the job would not fit either.
    job_id_before = set(svc.storage.iter_keys(f"tenants/{tenant}/jobs/"))
    assert_storage_refused(submit(client, png_bytes(), headers=headers))
    assert set(svc.storage.iter_keys(f"tenants/{tenant}/jobs/")) == job_id_before
    # Purging the first upload gives its bytes back.
    assert svc.stored.release(tenant, upload_owner(first.get_json()["upload_id"])) == 4000
    assert submit(client, png_bytes(), headers=headers).status_code == 202


def test_a_sent_source_and_its_results_count_until_purged(keyed) -> None:
    client, svc, tenant, headers = keyed
    data = png_bytes()
    job = submit(client, data, headers=headers).get_json()
    assert (
        svc.stored.counted(tenant, job_owner(job["id"])) == len(data) == svc.storage.size(source_key(tenant, job["id"]))
    )
    svc.stored.add(tenant, job_owner(job["id"]), 6000)  # results stored by a worker
    # Over the quota, the next job is refused even when its source is already uploaded.
    assert_storage_refused(submit(client, data, headers=headers))
    assert_storage_refused(client.post("/v1/jobs", json={"upload_id": "anything"}, headers=headers))


# --- uploads held to their declared size -----------------------------------------------------------


def test_a_presigned_put_of_another_length_is_refused_by_the_store(client) -> None:
    upload = client.post("/v1/uploads", json={"size": 10}).get_json()
    assert urllib3.request("PUT", upload["url"], body=b"x" * 100_000).status == 403
    assert urllib3.request("PUT", upload["url"], body=b"x" * 9).status == 403
    assert urllib3.request("PUT", upload["url"], body=b"x" * 10).status == 200


def test_multipart_parts_are_bound_to_their_sizes(client, hostile_settings) -> None:
    part = hostile_settings.multipart_part_bytes
    upload = client.post("/v1/uploads", json={"size": part + 10}).get_json()
    first, last = upload["multipart"]["parts"]
    assert urllib3.request("PUT", last["url"], body=b"y" * part).status == 403
    assert urllib3.request("PUT", last["url"], body=b"y" * 10).status == 200
    assert urllib3.request("PUT", first["url"], body=b"y" * (part + 1)).status == 403


@pytest.mark.parametrize("through", ["complete", "job"])
def test_an_object_larger_than_declared_is_deleted_and_refused(client, app, through) -> None:
    # As a store that does not check signed lengths would let it in.
    upload = client.post("/v1/uploads", json={"size": 10, "filename": "small.png"}).get_json()
    storage = app.extensions["colorize"].storage
    key = upload_key("local", upload["upload_id"])
    storage.put_bytes(key, png_bytes() + b"\0" * 30_000)
    if through == "complete":
        response = client.post(f"/v1/uploads/{upload['upload_id']}/complete", json={})
    else:
        response = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]})
    error = error_of(response, 413)
    assert error["code"] == "payload_too_large" and error["details"]["limit"] == 10
    assert not storage.exists(key)
    again = client.post("/v1/jobs", json={"upload_id": upload["upload_id"]})  # nothing left to run on
    assert error_of(again, 409)["code"] == "conflict"


def test_a_completed_upload_counts_what_it_holds(keyed) -> None:
    client, svc, tenant, headers = keyed
    upload = client.post("/v1/uploads", json={"size": 5000}, headers=headers).get_json()
    assert urllib3.request("PUT", upload["url"], body=b"z" * 5000).status == 200
    assert client.post(f"/v1/uploads/{upload['upload_id']}/complete", json={}, headers=headers).status_code == 200
    assert svc.stored.counted(tenant, upload_owner(upload["upload_id"])) == 5000


# --- wrong keys and proxies -----------------------------------------------------------------------


@pytest.fixture
def throttled(hostile_settings):
    settings = hostile_settings.with_overrides(
        auth="keys", trusted_proxies="127.0.0.0/8", quotas=Quotas(auth_failures_per_s=0.01, auth_failure_burst=5)
    )
    app = create_app(settings)
    return app.test_client(), app.extensions["colorize"]


def test_wrong_keys_are_throttled_per_client_address(throttled) -> None:
    client, svc = throttled
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    peer = {"REMOTE_ADDR": address}
    wrong = {"Authorization": "Bearer ck_0123456789abcdef_" + "A" * 43}
    statuses = [client.get("/v1/jobs/x", headers=wrong, environ_base=peer).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    # Refused before the key is looked at, a good one included; another address is not affected.
    good = {"Authorization": f"Bearer {svc.keys.create(f'h-{uuid.uuid4().hex[:8]}').token}"}
    response = client.get("/v1/jobs/x", headers=good, environ_base=peer)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert error_of(response, 429)["code"] == "rate_limited"
    assert client.get("/v1/jobs/x", headers=good, environ_base={"REMOTE_ADDR": PUBLIC_PEER}).status_code == 404


def test_forwarded_addresses_count_only_from_trusted_proxies(throttled) -> None:
    client, _ = throttled
    wrong = {"Authorization": "Bearer ck_0123456789abcdef_" + "B" * 43}
    # Through the trusted proxy (a loopback peer), each forwarded client has its own bucket. The
    # clients are drawn from a range no other test throttles (198.51.100.x is used above).
    subnet = f"198.18.{uuid.uuid4().int % 250 + 1}"
    for n in range(7):
        headers = {**wrong, "X-Forwarded-For": f"192.0.2.{uuid.uuid4().int % 250 + 1}, {subnet}.{n + 1}"}
        assert client.get("/v1/jobs/x", headers=headers).status_code == 401
    # From an untrusted peer the header is ignored: all of its requests share the peer's bucket.
    peer = {"REMOTE_ADDR": f"203.0.113.{uuid.uuid4().int % 250 + 1}"}
    statuses = [
        client.get("/v1/jobs/x", headers={**wrong, "X-Forwarded-For": f"192.0.2.{n}"}, environ_base=peer).status_code
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_open_mode_is_never_inferred_through_a_proxy(hostile_settings) -> None:
    trusted = create_app(hostile_settings.with_overrides(trusted_proxies="127.0.0.1/32")).test_client()
    untrusted = create_app(hostile_settings).test_client()
    assert untrusted.get("/v1/jobs/none").status_code == 404  # a loopback client: open
    # A request from the trusted proxy came from behind it, forwarding headers or not.
    assert trusted.get("/v1/jobs/none").status_code == 401
    for client in (trusted, untrusted):
        # A proxy on the same host forwarding someone else: a key is needed, trusted proxy or not.
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            response = client.get("/v1/jobs/none", headers={header: PUBLIC_PEER})
            assert response.status_code == 401, header
