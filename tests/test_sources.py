"""Sources by reference and destinations, for real: a second SeaweedFS server stands in for a
tenant's own store and a local HTTP server for URL sources; the API (keys required) and a
worker run on keys of their own.

Also: stored connections never answer their credentials, one tenant cannot use another's
connection, and item references survive the job store's encoding.
"""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import cv2
import numpy as np
import pytest
import urllib3
from cryptography.fernet import Fernet

from api.app import create_app
from cli.embedded_services import SeaweedS3Server
from cli.main import main
from shared.errors import ArchiveLimitExceeded, InvalidRequest, SourceForbidden
from shared.jobs.store import JobStore
from shared.redis_keys import RedisKeys
from shared.setting_types import Limits
from shared.settings import Settings
from shared.storage.customer_buckets import ConnectedBucket
from shared.storage.item_inputs import ItemInput
from shared.storage.object_keys import job_prefix, source_key
from shared.storage.sources import BucketSource, bucket_reference, parse_reference, url_path, url_reference
from shared.tenancy.api_keys import KeyStore
from shared.tenancy.stored_connections import Connection, check_endpoint
from tests.integration_fixtures import ApiServer, wait_until, with_own_keys
from worker.reference_entries import reference_entries
from worker.reference_reader import ReferenceReader

CUSTOMER_KEY, CUSTOMER_SECRET = "customer-key-id", "customer-secret-Zq81"
CUSTOMER_BUCKET = "customer-photos"
TERMINAL = {"succeeded", "partially_succeeded", "failed", "canceled"}
JOB_TIMEOUT_S = 60
http = urllib3.PoolManager(retries=False)


def png(width: int = 24, height: int = 16) -> bytes:
    ramp = np.linspace(20, 230, width * height, dtype=np.uint8).reshape(height, width)
    ok, data = cv2.imencode(".png", ramp)
    assert ok
    return data.tobytes()


# --- without services -------------------------------------------------------------------------


def test_item_references_survive_the_job_store_encoding() -> None:
    for reference in (bucket_reference("cust", "a;b/c d.png"), url_reference("https://x.example/p?q=1;2")):
        where = ItemInput(None, 0, 123, reference=reference)
        assert ItemInput.decode(where.encode()) == where
        assert where.encode().startswith(";")  # no input object: the job scripts count none
    assert parse_reference(bucket_reference("cust", "a/b.png")) == ("cust", "a/b.png")
    assert parse_reference(url_reference("http://h/x.png")) == (None, "http://h/x.png")
    assert url_path("https://h.example/photos/old%20one.png?size=1") == "old one.png"
    assert url_path("https://h.example/") == "h.example"


def test_the_connection_key_must_be_a_fernet_key() -> None:
    key = Fernet.generate_key().decode()
    assert Settings.from_env({"COLORIZE_CONNECTION_KEY": key}).connection_key == key
    with pytest.raises(ValueError, match="COLORIZE_CONNECTION_KEY=<hidden, 5 characters> is not a Fernet key"):
        Settings.from_env({"COLORIZE_CONNECTION_KEY": "short"})


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://s3.example.com/#fragment",
        "https://s3.example.com#",
        "https://s3.example.com/?versionId=1",
        "https://s3.example.com?",
        "https://key:secret@s3.example.com",
        "https://s3.example.com/bucket",
    ],
)
def test_an_endpoint_is_a_base_url_without_query_fragment_or_credentials(endpoint: str) -> None:
    def public(host: str, port: int) -> list[ipaddress.IPv4Address]:  # resolving, stubbed for one function
        return [ipaddress.IPv4Address("93.184.216.34")]

    with pytest.raises(InvalidRequest) as refused:
        check_endpoint(endpoint, Settings(), public)
    assert refused.value.details == {"field": "endpoint_url"}
    assert check_endpoint("https://s3.example.com:8443/", Settings(), public) == "https://s3.example.com:8443"


class _ListedBucket:
    """A connection's listing (a fake of one function's collaborator): counts what was pulled."""

    def __init__(self, objects: list[tuple[str, int]]) -> None:
        self.objects = objects
        self.pulled = 0

    def list_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        for key, size in self.objects:
            if key.startswith(prefix):
                self.pulled += 1
                yield key, size


class _Reader:
    def __init__(self, bucket: _ListedBucket) -> None:
        self._bucket = bucket

    def bucket(self, tenant: str, name: str) -> _ListedBucket:
        return self._bucket


def test_a_listing_is_cleaned_sized_and_stopped_at_the_entry_limit() -> None:
    listed = [
        ("in/a.png", 10),
        ("in/folder/", 0),
        ("in/.DS_Store", 5),
        ("in/big.png", 10_000),
        ("in/b.png", 10),
        *((f"in/more/{n}.png", 10) for n in range(100)),
    ]
    bucket = _ListedBucket(listed)
    limits = Limits(max_entries=3, max_entry_bytes=1000)
    entries = reference_entries(BucketSource("cust", "in/"), "t", _Reader(bucket), limits)  # type: ignore[arg-type]
    got: list = []
    with pytest.raises(ArchiveLimitExceeded):
        got.extend(entries)
    assert [(e.path, e.error.code if e.error else None) for e in got] == [
        ("a.png", None),
        ("big.png", "entry_too_large"),
        ("b.png", None),
    ]
    assert got[0].location == ItemInput(None, 0, 10, reference=bucket_reference("cust", "in/a.png"))
    assert bucket.pulled == 6  # the listing is read no further than the limit


class _Connections:
    """Stands in for the connection store: one tenant's one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, tenant: str, name: str) -> Connection:
        return self.connection


class _ChangingResolver:
    """Answers each host from a list of answers, moving on to the next one when told."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.turn = 0

    def __call__(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if host not in self.answers:
            return [ipaddress.ip_address(host)]
        answers = self.answers[host]
        return [ipaddress.ip_address(answers[min(self.turn, len(answers) - 1)])]


def test_a_cached_connection_is_checked_again_when_its_host_resolves_elsewhere() -> None:
    connection = Connection(
        name="cust",
        endpoint_url="http://photos.example.com",
        region="us-east-1",
        bucket="photos",
        created_at=0.0,
        access_key_id="k",
        secret_access_key="s",
    )
    resolver = _ChangingResolver({"photos.example.com": ["93.184.216.34", "93.184.216.35", "10.0.0.7"]})
    reader = ReferenceReader(_Connections(connection), Settings(), resolver)  # type: ignore[arg-type]
    first = reader.bucket("a", "cust")
    assert reader.bucket("a", "cust") is first  # the same answer: the client is reused
    resolver.turn = 1
    moved = reader.bucket("a", "cust")
    assert moved is not first and [str(a) for a in moved.addresses] == ["93.184.216.35"]
    resolver.turn = 2  # rebinding to a private address
    with pytest.raises(SourceForbidden):
        reader.bucket("a", "cust")


# --- services ---------------------------------------------------------------------------------


class _Images(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    # Paths answered with an image under a Content-Length that is no byte count.
    bad_lengths: ClassVar[dict[str, str]] = {"/long-length.png": "7" * 5000, "/superscript-length.png": "\u00b2"}

    def do_GET(self) -> None:
        if self.path in self.bad_lengths:
            self.send_response(200)
            self.send_header("Content-Length", self.bad_lengths[self.path])
            self.end_headers()
            self.wfile.write(png())
            return
        if self.path == "/moved.png":
            self.send_response(302)
            self.send_header("Location", "/img/a.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    _Images.files = {"/img/a.png": png(), "/img/b.png": png(18, 30)} | {f"/img/{i}.png": png() for i in range(7)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def customer_s3(tmp_path_factory) -> Iterator[SeaweedS3Server]:
    server = SeaweedS3Server(
        tmp_path_factory.mktemp("customer-s3"),
        access_key=CUSTOMER_KEY,
        secret_key=CUSTOMER_SECRET,
        bucket=CUSTOMER_BUCKET,
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def customer_bucket(customer_s3: SeaweedS3Server):
    client = boto3.client(
        "s3",
        endpoint_url=customer_s3.endpoint_url,
        aws_access_key_id=CUSTOMER_KEY,
        aws_secret_access_key=CUSTOMER_SECRET,
        region_name="us-east-1",
    )
    objects = {
        "photos/2024/a.png": png(),
        "photos/2024/trip/b.png": png(30, 20),
        "photos/2024/notes.txt": b"not an image at all",
        "photos/2024/.DS_Store": b"junk",
        "photos/elsewhere.png": png(),
    }
    for key, data in objects.items():
        client.put_object(Bucket=CUSTOMER_BUCKET, Key=key, Body=data)
    return client


@pytest.fixture(scope="module")
def source_settings(app_settings: Settings) -> Settings:
    # Loopback stores and URLs are allowed here as loopback webhook receivers are in tests.
    return with_own_keys(app_settings).with_overrides(
        auth="keys", connection_key=Fernet.generate_key().decode(), webhook_allow_private=True
    )


@pytest.fixture(scope="module")
def source_api(source_settings: Settings, start_worker) -> Iterator[str]:
    start_worker(source_settings)
    server = ApiServer(source_settings)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def tokens(source_settings: Settings, redis_client) -> dict[str, str]:
    keys = KeyStore(redis_client, namespace=source_settings.redis_namespace)
    return {tenant: keys.create(f"{tenant}-{uuid.uuid4().hex[:8]}").token for tenant in ("a", "b")}


class Api:
    """Calls as one tenant; every answer is checked to hold no credential of the customer's store."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(
        self, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        response = self.request(method, path, body, headers)
        return response.status, response.data

    def request(
        self, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        sent = self.headers if body is None else {**self.headers, "Content-Type": "application/json"}
        response = http.request(
            method, self.base + path, headers={**sent, **(headers or {})}, body=json.dumps(body) if body else None
        )
        assert CUSTOMER_SECRET.encode() not in response.data and CUSTOMER_KEY.encode() not in response.data
        return response

    def json(self, method: str, path: str, body: dict | None = None, expect: int = 200) -> dict:
        status, data = self.call(method, path, body)
        assert status == expect, data
        return json.loads(data)

    def finished(self, job_id: str) -> dict:
        return wait_until(
            lambda: (job := self.json("GET", f"/v1/jobs/{job_id}"))["status"] in TERMINAL and job,
            JOB_TIMEOUT_S,
            f"job {job_id} ends",
        )

    def items(self, job_id: str) -> dict[str, dict]:
        page = self.json("GET", f"/v1/jobs/{job_id}/items?limit=100")
        return {item["path"]: item for item in page["items"]}


@pytest.fixture(scope="module")
def tenant_a(source_api: str, tokens, customer_s3: SeaweedS3Server, customer_bucket) -> Api:
    api = Api(source_api, tokens["a"])
    stored = api.json(
        "POST",
        "/v1/connections",
        {
            "name": "cust",
            "endpoint_url": customer_s3.endpoint_url,
            "bucket": CUSTOMER_BUCKET,
            "access_key_id": CUSTOMER_KEY,
            "secret_access_key": CUSTOMER_SECRET,
        },
        expect=201,
    )
    assert stored["name"] == "cust" and stored["bucket"] == CUSTOMER_BUCKET
    assert set(stored) == {"name", "endpoint_url", "region", "bucket", "created_at"}
    return api


@pytest.fixture(scope="module")
def tenant_b(source_api: str, tokens) -> Api:
    return Api(source_api, tokens["b"])


def error_codes(items: dict[str, dict]) -> dict[str, str | None]:
    return {path: (item["error"] or {}).get("code") for path, item in items.items()}


@pytest.mark.integration
def test_connections_are_listed_without_credentials_and_kept_per_tenant(tenant_a: Api, tenant_b: Api) -> None:
    listed = tenant_a.json("GET", "/v1/connections")["connections"]
    assert [c["name"] for c in listed] == ["cust"]
    assert tenant_b.json("GET", "/v1/connections")["connections"] == []
    assert tenant_b.call("DELETE", "/v1/connections/cust")[0] == 404
    again = {"name": "cust", "endpoint_url": "http://127.0.0.1:1", "bucket": "b1", "access_key_id": "k"}
    again["secret_access_key"] = "s"
    assert tenant_a.call("POST", "/v1/connections", again)[0] == 409
    status, body = tenant_a.call("POST", "/v1/connections", {**again, "name": "x", "endpoint_url": "ftp://h"})
    assert status == 400 and json.loads(body)["error"]["details"]["field"] == "endpoint_url"


@pytest.mark.integration
def test_a_prefix_is_colorized_into_the_destination_with_a_manifest(tenant_a: Api, customer_bucket) -> None:
    job = tenant_a.json(
        "POST",
        "/v1/jobs",
        {
            "source": {"connection": "cust", "prefix": "photos/2024/"},
            "destination": {"connection": "cust", "prefix": "out/run1/"},
        },
        expect=202,
    )
    done = tenant_a.finished(job["id"])
    assert done["status"] == "partially_succeeded" and done["source"]["kind"] == "reference"
    items = tenant_a.items(job["id"])
    assert error_codes(items) == {"a.png": None, "trip/b.png": None, "notes.txt": "unsupported_format"}
    # The manifest follows the job's end: the worker that finishes the job writes it next.
    wait_until(
        lambda: "Contents" in customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/run1/manifest"),
        30,
        "the manifest in the destination",
    )
    written = customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/run1/")["Contents"]
    assert sorted(o["Key"] for o in written) == ["out/run1/a.jpg", "out/run1/manifest.json", "out/run1/trip/b.jpg"]
    result = customer_bucket.get_object(Bucket=CUSTOMER_BUCKET, Key="out/run1/trip/b.jpg")["Body"].read()
    assert cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR).shape == (20, 30, 3)
    manifest = json.loads(
        customer_bucket.get_object(Bucket=CUSTOMER_BUCKET, Key="out/run1/manifest.json")["Body"].read()
    )
    by_input = {entry["input_path"]: entry for entry in manifest["items"]}
    assert by_input["notes.txt"] == {
        "input_path": "notes.txt",
        "output_path": None,
        "status": "failed",
        "error_code": "unsupported_format",
        "model": done["model"],
    }
    assert by_input["trip/b.png"]["output_path"] == "trip/b.jpg" and by_input["trip/b.png"]["status"] == "done"
    # Kept in the service too: results.zip has the results and the same manifest.
    status, data = tenant_a.call("GET", f"/v1/jobs/{job['id']}/results.zip")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert status == 200 and sorted(archive.namelist()) == ["a.jpg", "manifest.json", "trip/b.jpg"]
    assert json.loads(archive.read("manifest.json"))["items"] == manifest["items"]


@pytest.mark.integration
def test_named_keys_fail_one_by_one_and_results_may_skip_the_service(tenant_a: Api, customer_bucket) -> None:
    job = tenant_a.json(
        "POST",
        "/v1/jobs",
        {
            "source": {"connection": "cust", "keys": ["photos/2024/a.png", "photos/gone.png", "../up.png"]},
            "destination": {"connection": "cust", "prefix": "out/run2/", "keep_in_service": False},
        },
        expect=202,
    )
    done = tenant_a.finished(job["id"])
    items = tenant_a.items(job["id"])
    assert done["status"] == "partially_succeeded"
    assert error_codes(items) == {
        "photos/2024/a.png": None,
        "photos/gone.png": "source_not_found",
        "../up.png": "unsafe_entry",
    }
    assert customer_bucket.head_object(Bucket=CUSTOMER_BUCKET, Key="out/run2/photos/2024/a.jpg")
    wait_until(
        lambda: "Contents" in customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/run2/manifest"),
        10,
        "the manifest is written",
    )
    assert tenant_a.call("GET", f"/v1/jobs/{job['id']}/items/0/result")[0] == 404  # not kept in the service
    status, data = tenant_a.call("GET", f"/v1/jobs/{job['id']}/results.zip")
    assert status == 200 and zipfile.ZipFile(io.BytesIO(data)).namelist() == ["manifest.json"]


@pytest.mark.integration
def test_a_reference_source_honours_the_output_options_in_its_destination(tenant_a: Api, customer_bucket) -> None:
    job = tenant_a.json(
        "POST",
        "/v1/jobs",
        {
            "source": {"connection": "cust", "prefix": "photos/2024/"},
            "format": "png",
            "max_side": 15,
            "destination": {"connection": "cust", "prefix": "out/png/"},
        },
        expect=202,
    )
    assert job["output"] == {"format": "png", "quality": None, "max_side": 15}
    done = tenant_a.finished(job["id"])
    assert done["status"] == "partially_succeeded"
    items = tenant_a.items(job["id"])
    assert {path: item["output_path"] for path, item in items.items() if item["status"] == "done"} == {
        "a.png": "a.png",
        "trip/b.png": "trip/b.png",
    }
    wait_until(
        lambda: "Contents" in customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/png/manifest"),
        10,
        "the manifest is written",
    )
    written = customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/png/")["Contents"]
    assert sorted(o["Key"] for o in written) == ["out/png/a.png", "out/png/manifest.json", "out/png/trip/b.png"]
    for key in ("out/png/a.png", "out/png/trip/b.png"):
        stored = customer_bucket.get_object(Bucket=CUSTOMER_BUCKET, Key=key)
        assert stored["ContentType"] == "image/png", key
        data = stored["Body"].read()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), key
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert max(image.shape[:2]) <= 15, key
    result = customer_bucket.get_object(Bucket=CUSTOMER_BUCKET, Key="out/png/trip/b.png")["Body"].read()
    assert cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_COLOR).shape == (10, 15, 3)  # 30 x 20 scaled
    manifest = json.loads(
        customer_bucket.get_object(Bucket=CUSTOMER_BUCKET, Key="out/png/manifest.json")["Body"].read()
    )
    outputs = {entry["input_path"]: entry["output_path"] for entry in manifest["items"]}
    assert outputs == {"a.png": "a.png", "trip/b.png": "trip/b.png", "notes.txt": None}
    # The service keeps the same: results.zip names the .png results and carries the manifest.
    status, data = tenant_a.call("GET", f"/v1/jobs/{job['id']}/results.zip")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert status == 200 and sorted(archive.namelist()) == ["a.png", "manifest.json", "trip/b.png"]
    assert archive.read("trip/b.png") == result


@pytest.mark.integration
def test_urls_are_read_as_items(tenant_a: Api, image_server: str) -> None:
    urls = [f"{image_server}/img/a.png", f"{image_server}/img/missing.png", f"{image_server}/moved.png"]
    job = tenant_a.json("POST", "/v1/jobs", {"source": {"urls": urls}}, expect=202)
    tenant_a.finished(job["id"])
    assert error_codes(tenant_a.items(job["id"])) == {
        "a.png": None,
        "missing.png": "source_not_found",
        "moved.png": "source_unreachable",  # redirects are not followed
    }


@pytest.mark.integration
@pytest.mark.parametrize("bad", ["long-length.png", "superscript-length.png"])
def test_a_content_length_that_is_no_byte_count_fails_its_item_alone(
    tenant_a: Api, image_server: str, bad: str
) -> None:
    urls = [f"{image_server}/img/{i}.png" for i in range(7)] + [f"{image_server}/{bad}"]
    job = tenant_a.json("POST", "/v1/jobs", {"source": {"urls": urls}}, expect=202)
    tenant_a.finished(job["id"])
    items = tenant_a.json("GET", f"/v1/jobs/{job['id']}/items?limit=100")["items"]
    codes = [(item["error"] or {}).get("code") for item in items]
    assert codes == [None] * 7 + ["source_unreachable"]


@pytest.mark.integration
def test_a_reference_job_waits_is_listed_and_its_deletion_leaves_the_tenants_buckets_alone(
    tenant_a: Api, customer_bucket, source_settings: Settings, redis_client, storage
) -> None:
    answer = tenant_a.request(
        "POST",
        "/v1/jobs",
        {
            "source": {"connection": "cust", "keys": ["photos/2024/a.png"]},
            "destination": {"connection": "cust", "prefix": "out/deleted/"},
        },
        headers={"Prefer": "wait=30"},
    )
    assert answer.status == 201, answer.data  # Prefer: wait holds for a source by reference too
    assert answer.headers["Preference-Applied"] == "wait=30"
    job = json.loads(answer.data)
    assert job["status"] == "succeeded" and job["source"]["kind"] == "reference"
    assert job["id"] in [listed["id"] for listed in tenant_a.json("GET", "/v1/jobs?limit=100")["jobs"]]
    wait_until(
        lambda: "Contents" in customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/deleted/manifest"),
        10,
        "the manifest is written",
    )
    tenant = JobStore(redis_client, source_settings).get(job["id"]).tenant
    kept = list(storage.iter_keys(job_prefix(tenant, job["id"])))
    assert any("/results/" in key for key in kept) and source_key(tenant, job["id"]) in kept

    assert tenant_a.call("DELETE", f"/v1/jobs/{job['id']}")[0] == 204
    assert list(storage.iter_keys(job_prefix(tenant, job["id"]))) == []  # our store: source document, results
    assert redis_client.get(RedisKeys(source_settings.redis_namespace).job_destination(job["id"])) is None
    assert tenant_a.call("GET", f"/v1/jobs/{job['id']}/results.zip")[0] == 404
    assert job["id"] not in [listed["id"] for listed in tenant_a.json("GET", "/v1/jobs?limit=100")["jobs"]]
    # The tenant's own bucket keeps its source and what was written to the destination.
    assert customer_bucket.head_object(Bucket=CUSTOMER_BUCKET, Key="photos/2024/a.png")
    written = customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="out/deleted/")["Contents"]
    assert sorted(o["Key"] for o in written) == ["out/deleted/manifest.json", "out/deleted/photos/2024/a.jpg"]


@pytest.mark.integration
def test_another_tenants_connection_is_not_found(tenant_a: Api, tenant_b: Api) -> None:
    for body in (
        {"source": {"connection": "cust", "prefix": "photos/"}},
        {"source": {"urls": ["http://127.0.0.1:9/x.png"]}, "destination": {"connection": "cust"}},
    ):
        status, data = tenant_b.call("POST", "/v1/jobs", body)
        assert status == 404 and json.loads(data)["error"]["code"] == "not_found"


@pytest.mark.integration
def test_non_public_stores_and_urls_are_refused_by_default(source_settings: Settings, tokens) -> None:
    client = create_app(source_settings.with_overrides(webhook_allow_private=False)).test_client()
    headers = {"Authorization": f"Bearer {tokens['a']}"}
    connection = {
        "name": "inside",
        "endpoint_url": "http://127.0.0.1:8333",
        "bucket": "b1",
        "access_key_id": "k",
        "secret_access_key": "s",
    }
    refused = client.post("/v1/connections", json=connection, headers=headers)
    assert refused.status_code == 400 and refused.get_json()["error"]["details"]["field"] == "endpoint_url"
    refused = client.post("/v1/jobs", json={"source": {"urls": ["http://10.0.0.1/x.png"]}}, headers=headers)
    assert refused.status_code == 400 and refused.get_json()["error"]["details"]["field"] == "source.urls"


@pytest.mark.integration
def test_the_command_line_adds_connections_and_submits_by_reference(
    source_api: str, tokens, customer_s3: SeaweedS3Server, customer_bucket, image_server: str, tmp_path
) -> None:
    env = {"AWS_SECRET_ACCESS_KEY": CUSTOMER_SECRET, "COLORIZE_API_KEY": tokens["b"]}

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--api", source_api, *argv], env=env, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    add = ("connections", "add", "mine", "--endpoint", customer_s3.endpoint_url, "--bucket", CUSTOMER_BUCKET)
    assert run(*add, "--access-key-id", CUSTOMER_KEY) == (0, "mine\n", "")
    code, out, _ = run("connections", "list", "--json")
    assert code == 0 and CUSTOMER_SECRET not in out and json.loads(out)["connections"][0]["name"] == "mine"
    code, out, err = run(
        "submit",
        "--url",
        f"{image_server}/img/b.png",
        "--to-connection",
        "mine",
        "--to-prefix",
        "cli/",
        "--wait",
        "--out",
        str(tmp_path),
        "--poll",
        "0.2",
    )
    assert code == 0, err
    assert (tmp_path / "b.jpg").is_file()
    assert customer_bucket.head_object(Bucket=CUSTOMER_BUCKET, Key="cli/b.jpg")
    # A file sent with a destination goes through a presigned upload and a JSON job.
    photo = tmp_path / "sent.png"
    photo.write_bytes(png(20, 12))
    code, out, err = run(
        "submit", str(photo), "--to-connection", "mine", "--to-prefix", "sent/", "--only-to-connection"
    )
    assert code == 0, err
    wait_until(
        lambda: "Contents" in customer_bucket.list_objects_v2(Bucket=CUSTOMER_BUCKET, Prefix="sent/manifest.json"),
        JOB_TIMEOUT_S,
        "the sent file's job writes its manifest",
    )
    assert customer_bucket.head_object(Bucket=CUSTOMER_BUCKET, Key="sent/sent.jpg")
    code, _, err = run("submit", "--from-connection", "mine", "--url", f"{image_server}/img/b.png")
    assert code == 2 and "one of them" in err
    assert run("connections", "delete", "mine")[0] == 0
    assert run("connections", "delete", "mine")[0] == 1


@pytest.mark.integration
def test_a_prefix_is_listed_page_by_page(customer_s3: SeaweedS3Server, customer_bucket, source_settings) -> None:
    connection = Connection(
        name="cust",
        endpoint_url=customer_s3.endpoint_url,
        region="us-east-1",
        bucket=CUSTOMER_BUCKET,
        created_at=0.0,
        access_key_id=CUSTOMER_KEY,
        secret_access_key=CUSTOMER_SECRET,
    )
    bucket = ConnectedBucket(connection, source_settings)
    keys = [key for key, _ in bucket.list_objects("photos/", page_size=2)]
    assert keys == sorted(key for key in keys) and len(keys) == 5
    assert "photos/2024/trip/b.png" in keys and "photos/elsewhere.png" in keys


@pytest.mark.integration
def test_the_services_own_store_is_never_a_connection(tenant_b: Api, source_settings: Settings) -> None:
    # Private addresses are allowed here, and still the service's store is refused: by its
    # endpoint, by another name of the same host and port, or by the service's access key.
    store = urllib3.util.parse_url(source_settings.s3_endpoint_url)
    for endpoint, key_id in (
        (source_settings.s3_endpoint_url, "some-key"),
        (f"http://localhost:{store.port}", "some-key"),
        (f"http://[::ffff:127.0.0.1]:{store.port}", "some-key"),
        ("http://127.0.0.1:9", source_settings.aws_access_key_id),
    ):
        body = {
            "name": "own",
            "endpoint_url": endpoint,
            "bucket": "b1",
            "access_key_id": key_id,
            "secret_access_key": "s",
        }
        status, data = tenant_b.call("POST", "/v1/connections", body)
        assert status == 400 and json.loads(data)["error"]["code"] == "service_store_endpoint", (endpoint, data)
    # A connection stored before (or around) these rules is refused when a worker reads through it.
    stored = Connection(
        name="own",
        endpoint_url=source_settings.s3_endpoint_url,
        region="us-east-1",
        bucket=source_settings.s3_bucket,
        created_at=0.0,
        access_key_id=source_settings.aws_access_key_id,
        secret_access_key=source_settings.aws_secret_access_key,
    )
    with pytest.raises(SourceForbidden):
        ConnectedBucket(stored, source_settings)


@pytest.mark.integration
def test_a_connections_requests_go_to_the_address_checked(
    customer_s3: SeaweedS3Server, customer_bucket, source_settings
) -> None:
    # The endpoint's name resolves only through the resolver given: were the S3 client to look
    # it up again, it would find nothing.
    port = urllib3.util.parse_url(customer_s3.endpoint_url).port
    connection = Connection(
        name="cust",
        endpoint_url=f"http://customer-store.invalid:{port}",
        region="us-east-1",
        bucket=CUSTOMER_BUCKET,
        created_at=0.0,
        access_key_id=CUSTOMER_KEY,
        secret_access_key=CUSTOMER_SECRET,
    )
    resolver = _ChangingResolver({"customer-store.invalid": ["127.0.0.1"]})
    bucket = ConnectedBucket(connection, source_settings, resolver)
    assert bucket.get("photos/2024/a.png", 10**6) == png()
