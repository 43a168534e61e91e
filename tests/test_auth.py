"""API keys and tenants against real Redis and SeaweedFS: the key CLI, 401s, cross-tenant 404s,
presigned URL scope, and when the API runs without authentication.

No worker consumes this module's Redis keys, so submitted jobs stay where the API left them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import pytest
import urllib3
from PIL import Image

from api.app import create_app
from cli.keys import main as keys_main
from cli.local_stack import serve
from shared.jobs.records import ItemResult
from shared.jobs.store import JobStore
from shared.storage.object_keys import result_key, source_key
from shared.tenancy.api_keys import LOCAL_TENANT, KeyStore, is_loopback
from tests.integration_fixtures import with_own_keys

pytestmark = pytest.mark.integration

PUBLIC_PEER = "203.0.113.7"  # an address from a documentation range: not loopback


@pytest.fixture(scope="module")
def auth_settings(app_settings):
    return with_own_keys(app_settings).with_overrides(auth="keys")


@pytest.fixture(scope="module")
def app(auth_settings):
    return create_app(auth_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def keys(app) -> KeyStore:
    return app.extensions["colorize"].keys


@pytest.fixture(scope="module")
def jobs(app) -> JobStore:
    return app.extensions["colorize"].jobs


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 16), 90, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(client, headers: dict[str, str], **environ):
    return client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(png_bytes()), "p.png")},
        content_type="multipart/form-data",
        headers=headers,
        environ_base=environ,
    )


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


# --- the key store and its command line --------------------------------------------------------


def test_keys_cli_creates_lists_and_revokes_storing_only_a_hash(auth_settings, keys, capsys) -> None:
    tenant = new_tenant()
    assert keys_main(["create", "--tenant", tenant, "--name", "nightly import"], auth_settings) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("ck_") and "shown only this once" in err
    (key,) = keys.list(tenant)
    assert (key.tenant, key.name, key.revoked) == (tenant, "nightly import", False)
    assert token.split("_")[1] == key.id

    # Redis holds the hash and never the key nor its secret.
    secret = token.split("_", 2)[2]
    record = keys.redis.hgetall(keys.record_key(key.id))
    assert record[b"hash"].decode() == hashlib.sha256(token.encode()).hexdigest()
    assert all(secret.encode() not in value for value in record.values())

    assert keys_main(["list", "--tenant", tenant], auth_settings) == 0
    listing = capsys.readouterr().out
    assert key.id in listing and "nightly import" in listing and "active" in listing
    assert secret not in listing

    assert keys_main(["revoke", key.id], auth_settings) == 0
    capsys.readouterr()
    assert keys.authenticate(token).revoked
    assert keys_main(["list", "--tenant", tenant], auth_settings) == 0
    assert "revoked" in capsys.readouterr().out


def test_keys_cli_refuses_bad_input(auth_settings) -> None:
    assert keys_main(["revoke", "0123456789abcdef"], auth_settings) == 1
    for tenant in ("a:b", "../etc", ""):
        assert keys_main(["create", "--tenant", tenant], auth_settings) == 1
    assert keys_main(["list"], auth_settings.with_overrides(redis_url=None)) == 2


def test_authenticate_matches_only_the_exact_key(keys) -> None:
    created = keys.create(new_tenant())
    token = created.token
    assert keys.authenticate(token) == created.key
    key_id, secret = token.split("_", 2)[1:]
    assert keys.authenticate(f"ck_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}") is None
    assert keys.authenticate(f"ck_{'0' * 16}_{secret}") is None
    assert keys.authenticate("ck_short_secret") is None


# --- who gets in --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def revoked_token(keys) -> str:
    created = keys.create(new_tenant())
    keys.revoke(created.key.id)
    return created.token


@pytest.fixture(scope="module")
def valid_token(keys) -> str:
    return keys.create(new_tenant()).token


@pytest.mark.parametrize(
    "kind", ["none", "basic", "empty bearer", "garbage", "unknown id", "wrong secret", "revoked", "garbage x-api-key"]
)
def test_requests_without_a_valid_key_get_401_with_a_challenge(client, kind, valid_token, revoked_token) -> None:
    key_id, secret = valid_token.split("_", 2)[1:]
    headers = {
        "none": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": bearer("not-a-key"),
        "unknown id": bearer(f"ck_{'f' * 16}_{secret}"),
        "wrong secret": bearer(f"ck_{key_id}_{'x' * 43}"),
        "revoked": bearer(revoked_token),
        "garbage x-api-key": {"X-API-Key": "nope"},
    }[kind]
    for response in (client.get("/v1/models", headers=headers), submit(client, headers)):
        assert response.status_code == 401
        assert error_code(response) == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_acts_for_its_tenant_by_bearer_or_x_api_key(client, keys, jobs) -> None:
    tenant = new_tenant()
    token = keys.create(tenant).token
    response = submit(client, bearer(token))
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    job = jobs.get(job_id)
    assert job.tenant == tenant
    assert job.source_key == source_key(tenant, job_id) and job.source_key.startswith(f"tenants/{tenant}/")
    assert client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": token}).status_code == 200


def test_public_paths_need_no_key(client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503  # no workers under these keys, but no 401
    unknown = client.get("/v1/no-such-route")
    assert unknown.status_code == 401  # routes are not revealed before authentication


# --- tenants do not see each other --------------------------------------------------------------


def test_another_tenants_ids_answer_404(client, keys, jobs, app, auth_settings) -> None:
    owner, other = bearer(keys.create(new_tenant()).token), bearer(keys.create(new_tenant()).token)
    job_id = submit(client, owner).get_json()["id"]
    job = jobs.get(job_id)
    storage = app.extensions["colorize"].storage
    storage.put_bytes(result_key(job.tenant, job_id, 0), b"\xff\xd8\xff jpeg", content_type="image/jpeg")
    jobs.mark_running(job_id)
    jobs.record(job_id, [ItemResult.done(0)])
    data = png_bytes()
    upload = client.post("/v1/uploads", json={"filename": "u.png", "size": len(data)}, headers=owner).get_json()
    assert urllib3.request("PUT", upload["url"], body=data).status == 200

    attempts = [
        ("get", f"/v1/jobs/{job_id}", None),
        ("get", f"/v1/jobs/{job_id}/items", None),
        ("get", f"/v1/jobs/{job_id}/items/0/result", None),
        ("get", f"/v1/jobs/{job_id}/results.zip", None),
        ("get", f"/v1/jobs/{job_id}/webhooks", None),
        ("post", f"/v1/jobs/{job_id}/cancel", None),
        ("post", f"/v1/uploads/{upload['upload_id']}/complete", {"parts": [{"part_number": 1, "etag": "x"}]}),
        ("post", "/v1/jobs", {"upload_id": upload["upload_id"]}),
    ]
    for method, path, body in attempts:
        response = getattr(client, method)(path, json=body, headers=other)
        assert response.status_code == 404, (path, response.status_code)
        assert error_code(response) == "not_found"

    # The owner still has everything, untouched.
    assert client.get(f"/v1/jobs/{job_id}", headers=owner).get_json()["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{job_id}/items/0/result", headers=owner).status_code == 302
    assert client.post("/v1/jobs", json={"upload_id": upload["upload_id"]}, headers=owner).status_code == 202


def test_presigned_result_url_is_short_lived_and_names_one_object(client, keys, jobs, app, auth_settings) -> None:
    storage = app.extensions["colorize"].storage
    results = {}
    for name in ("a", "b"):
        headers = bearer(keys.create(new_tenant()).token)
        job_id = submit(client, headers).get_json()["id"]
        key = result_key(jobs.get(job_id).tenant, job_id, 0)
        storage.put_bytes(key, f"result of {name}".encode(), content_type="image/jpeg")
        jobs.mark_running(job_id)
        jobs.record(job_id, [ItemResult.done(0)])
        results[name] = (headers, job_id, key)

    headers, job_id, key_a = results["a"]
    url = client.get(f"/v1/jobs/{job_id}/items/0/result", headers=headers).headers["Location"]
    parts = urlsplit(url)
    assert parse_qs(parts.query)["X-Amz-Expires"] == [str(auth_settings.presign_ttl_s)]
    assert urllib3.request("GET", url).data == b"result of a"

    # The signature covers the path and every parameter: pointing it anywhere else is refused.
    key_b = results["b"][2]
    other_object = urlunsplit(parts._replace(path=parts.path.replace(key_a, key_b)))
    assert other_object != url
    assert urllib3.request("GET", other_object).status == 403
    longer = urlunsplit(
        parts._replace(
            query=parts.query.replace(f"X-Amz-Expires={auth_settings.presign_ttl_s}", "X-Amz-Expires=604800")
        )
    )
    assert urllib3.request("GET", longer).status == 403


# --- open mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("api.example.com", False),
        ("", False),
    ],
)
def test_loopback_addresses(host, expected) -> None:
    assert is_loopback(host) is expected


def test_unset_auth_on_loopback_runs_open_for_loopback_clients_only(auth_settings, keys, jobs, caplog) -> None:
    settings = auth_settings.with_overrides(auth=None, api_host="127.0.0.1")
    with caplog.at_level(logging.WARNING, logger="api.tenancy"):
        client = create_app(settings).test_client()
    assert any(
        "authentication OFF" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records
    )

    response = submit(client, {}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 202
    assert jobs.get(response.get_json()["id"]).tenant == LOCAL_TENANT

    # A server bound wider than its settings say is still not open to other machines.
    assert submit(client, {}, REMOTE_ADDR=PUBLIC_PEER).status_code == 401
    tenant = new_tenant()
    response = submit(client, bearer(keys.create(tenant).token), REMOTE_ADDR=PUBLIC_PEER)
    assert response.status_code == 202 and jobs.get(response.get_json()["id"]).tenant == tenant


def test_unset_auth_on_a_public_interface_requires_keys(auth_settings) -> None:
    client = create_app(auth_settings.with_overrides(auth=None, api_host="0.0.0.0")).test_client()
    response = client.get("/v1/models", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 401


def test_open_on_a_public_interface_is_refused_unless_overridden(auth_settings) -> None:
    with pytest.raises(ValueError, match="COLORIZE_AUTH_ALLOW_OPEN_PUBLIC"):
        create_app(auth_settings.with_overrides(auth="open", api_host="0.0.0.0"))
    settings = auth_settings.with_overrides(auth="open", api_host="0.0.0.0", auth_allow_open_public=True)
    client = create_app(settings).test_client()
    assert client.get("/v1/models", environ_base={"REMOTE_ADDR": PUBLIC_PEER}).status_code == 200


def test_local_stack_refuses_open_on_a_public_interface_before_starting_anything(
    auth_settings, tmp_path, capsys
) -> None:
    settings = auth_settings.with_overrides(
        auth="open", api_host="0.0.0.0", redis_url=None, s3_endpoint_url=None, data_dir=tmp_path / "stack"
    )
    assert serve(settings) == 2
    assert "COLORIZE_AUTH_ALLOW_OPEN_PUBLIC" in capsys.readouterr().err
    assert not settings.data_dir.exists()  # no embedded Redis or SeaweedFS was started
