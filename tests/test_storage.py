"""Storage against a real SeaweedFS S3 server: objects, presigned HTTP transfers, seekable zip reads."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
import zipfile

import pytest

from cli.embedded_services import free_port
from shared.errors import InvalidRequest, NotFound, ServiceUnavailable
from shared.ids import new_id
from shared.storage.object_keys import (
    input_object_key,
    input_object_name,
    job_prefix,
    result_key,
    source_key,
    upload_key,
)
from shared.storage.object_store import Storage
from tests.integration_fixtures import wait_until

MIB = 1024 * 1024


def fresh_key(name: str = "object") -> str:
    return f"{job_prefix('storage-test', new_id())}{name}"


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read(), dict(response.headers)


# --- key layout ---------------------------------------------------------------------------


def test_keys_of_a_job_live_under_its_tenant_and_job_prefix() -> None:
    prefix = job_prefix("acme", "job1")
    assert prefix == "tenants/acme/jobs/job1/"
    for key in (
        source_key("acme", "job1"),
        input_object_key("acme", "job1", input_object_name(3, 5)),
        result_key("acme", "job1", 3),
    ):
        assert key.startswith(prefix)
    assert upload_key("acme", "up1").startswith("tenants/acme/")
    assert not upload_key("acme", "up1").startswith(prefix)
    assert job_prefix("other", "job1") != prefix


def test_result_keys_are_jpegs_in_index_order() -> None:
    keys = [result_key("t", "j", i) for i in (0, 9, 10, 99_999)]
    assert all(key.endswith(".jpg") for key in keys)
    assert keys == sorted(keys)
    assert len({input_object_key("t", "j", input_object_name(i, i + 1)) for i in range(20)}) == 20


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a b", ".hidden", "x" * 65, "é", None])
def test_unsafe_ids_are_rejected(bad) -> None:
    with pytest.raises(InvalidRequest):
        job_prefix(bad, "job")
    with pytest.raises(InvalidRequest):
        source_key("tenant", bad)
    with pytest.raises(InvalidRequest):
        upload_key("tenant", bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_item_indexes_must_be_non_negative_integers(bad) -> None:
    with pytest.raises(InvalidRequest):
        result_key("t", "j", bad)


# --- objects ------------------------------------------------------------------------------


@pytest.mark.integration
def test_bytes_round_trip(storage: Storage) -> None:
    key = fresh_key()
    storage.put_bytes(key, b"\x00colorize\xff", content_type="image/jpeg")
    assert storage.get_bytes(key) == b"\x00colorize\xff"
    assert storage.size(key) == 10
    assert storage.exists(key)


@pytest.mark.integration
def test_missing_objects_raise_not_found(storage: Storage) -> None:
    key = fresh_key("missing")
    assert not storage.exists(key)
    for read in (storage.get_bytes, storage.size, storage.open_stream, storage.open_seekable):
        with pytest.raises(NotFound):
            read(key)


@pytest.mark.integration
def test_put_stream_uploads_a_non_seekable_stream_in_parts(storage: Storage) -> None:
    data = os.urandom(9 * MIB + 7)  # more than one 8 MiB part

    class OneWay(io.RawIOBase):
        def __init__(self) -> None:
            self._source = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            return self._source.readinto(buffer)

    key = fresh_key()
    assert storage.put_stream(key, io.BufferedReader(OneWay())) == len(data)
    assert storage.get_bytes(key) == data


@pytest.mark.integration
def test_open_stream_reads_forward_in_chunks(storage: Storage) -> None:
    data = os.urandom(3 * MIB)
    key = fresh_key()
    storage.put_bytes(key, data)
    with storage.open_stream(key) as stream:
        assert not stream.seekable()
        chunks = iter(lambda: stream.read(64 * 1024), b"")
        assert b"".join(chunks) == data


@pytest.mark.integration
def test_iter_keys_and_delete_prefix_touch_only_the_prefix(storage: Storage) -> None:
    doomed_job = new_id()
    doomed, kept = job_prefix("storage-test", doomed_job), job_prefix("storage-test", new_id())
    for i in range(3):
        storage.put_bytes(result_key("storage-test", doomed_job, i), b"x")
    storage.put_bytes(kept + "source", b"y")
    assert len(list(storage.iter_keys(doomed))) == 3
    assert storage.delete_prefix(doomed) == 3
    assert list(storage.iter_keys(doomed)) == []
    assert list(storage.iter_keys(kept)) == [kept + "source"]
    with pytest.raises(ValueError):
        storage.delete_prefix("")


# --- presigned URLs -----------------------------------------------------------------------


@pytest.mark.integration
def test_presigned_get_downloads_as_an_attachment(storage: Storage) -> None:
    key = fresh_key("result.jpg")
    storage.put_bytes(key, b"jpeg bytes", content_type="image/jpeg")
    status, body, headers = http("GET", storage.presign_get(key, download_name="été 1962.jpg"))
    assert (status, body) == (200, b"jpeg bytes")
    assert headers["Content-Type"] == "image/jpeg"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%C3%A9t%C3%A9%201962.jpg" in disposition


@pytest.mark.integration
def test_presigned_put_stores_the_body(storage: Storage) -> None:
    key = fresh_key("upload")
    status, _, _ = http("PUT", storage.presign_put(key), data=b"uploaded through a presigned URL")
    assert status == 200
    assert storage.get_bytes(key) == b"uploaded through a presigned URL"


@pytest.mark.integration
def test_presigned_urls_expire(storage: Storage) -> None:
    key = fresh_key()
    storage.put_bytes(key, b"x")
    url = storage.presign_get(key, expires_s=1)

    def refusal() -> int | None:
        try:
            http("GET", url)
        except urllib.error.HTTPError as refused:
            return refused.code
        return None

    assert wait_until(refusal, 10, "the URL has expired") == 403


@pytest.mark.integration
def test_presigned_urls_use_the_public_endpoint(service_settings, s3_server) -> None:
    public = f"http://localhost:{s3_server.port}"
    store = Storage(service_settings.with_overrides(s3_public_endpoint_url=public))
    key = fresh_key()
    store.put_bytes(key, b"via the public address")
    url = store.presign_get(key)
    assert url.startswith(public + "/")
    assert http("GET", url)[1] == b"via the public address"


@pytest.mark.integration
def test_multipart_upload_through_presigned_part_urls(storage: Storage) -> None:
    key = fresh_key("archive.zip")
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"last part may be small"]
    upload_id = storage.create_multipart(key)
    etags = []
    for number, part in enumerate(parts, start=1):
        status, _, headers = http("PUT", storage.presign_part(key, upload_id, number), data=part)
        assert status == 200
        etags.append({"part_number": number, "etag": headers["ETag"]})
    assert not storage.exists(key)  # nothing is visible before completion
    storage.complete_multipart(key, upload_id, list(reversed(etags)))  # order does not matter
    assert storage.size(key) == sum(map(len, parts))
    assert storage.get_bytes(key) == b"".join(parts)


@pytest.mark.integration
def test_multipart_completion_rejects_wrong_parts_and_aborted_uploads(storage: Storage) -> None:
    key = fresh_key()
    upload_id = storage.create_multipart(key)
    _, _, headers = http("PUT", storage.presign_part(key, upload_id, 1), data=b"part")
    with pytest.raises(InvalidRequest):
        storage.complete_multipart(key, upload_id, [{"part_number": 1, "etag": '"0123456789abcdef"'}])
    with pytest.raises(InvalidRequest):
        storage.presign_part(key, upload_id, 10_001)
    storage.abort_multipart(key, upload_id)
    storage.abort_multipart(key, upload_id)  # already gone: still fine
    with pytest.raises(NotFound):
        storage.complete_multipart(key, upload_id, [{"part_number": 1, "etag": headers["ETag"]}])
    assert not storage.exists(key)


# --- seekable reads -----------------------------------------------------------------------


@pytest.mark.integration
def test_zipfile_reads_entries_without_downloading_the_archive(storage: Storage) -> None:
    buffer = io.BytesIO()
    big = os.urandom(8 * MIB)
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/big.bin", big)
        archive.writestr("photos/small.txt", b"small entry " * 100)
    data = buffer.getvalue()
    key = fresh_key("source")
    storage.put_bytes(key, data)

    counted = Storage(storage.settings)  # its own client, so the byte counter stays local to this test
    fetched: list[int] = []
    counted._client.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **_: fetched.append(parsed.get("ContentLength", 0))
    )
    with counted.open_seekable(key) as source, zipfile.ZipFile(source) as archive:
        assert archive.namelist() == ["photos/big.bin", "photos/small.txt"]
        assert archive.read("photos/small.txt") == b"small entry " * 100
    assert 0 < sum(fetched) < 64 * 1024  # the central directory and one small entry, not 8 MiB

    with storage.open_seekable(key) as source:
        assert source.seekable()
        source.seek(-22, io.SEEK_END)
        assert source.read() == data[-22:]
        source.seek(5 * MIB)
        assert source.read(100) == data[5 * MIB : 5 * MIB + 100]
        assert source.tell() == 5 * MIB + 100
        with zipfile.ZipFile(source) as archive:
            assert archive.read("photos/big.bin") == big


@pytest.mark.integration
def test_seekable_reader_reports_an_object_gone_mid_read_as_not_found(storage: Storage) -> None:
    key = fresh_key()
    storage.put_bytes(key, os.urandom(MIB))
    with storage.open_seekable(key) as source:
        assert len(source.read(10)) == 10
        storage.delete_prefix(key)
        with pytest.raises(NotFound):
            source.seek(MIB // 2)
            source.read(10)


# --- bucket and availability --------------------------------------------------------------


@pytest.mark.integration
def test_ensure_bucket_creates_once_and_is_idempotent(service_settings) -> None:
    store = Storage(service_settings.with_overrides(s3_bucket=f"colorize-{new_id()[:12]}"))
    with pytest.raises(ServiceUnavailable):
        store.ping()
    store.ensure_bucket()
    store.ensure_bucket()
    store.ping()
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


@pytest.mark.integration
def test_unreachable_store_is_service_unavailable(service_settings) -> None:
    store = Storage(service_settings.with_overrides(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ServiceUnavailable):
        store.ping()
    with pytest.raises(ServiceUnavailable):
        store.get_bytes("any")
