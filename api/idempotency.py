"""``Idempotency-Key`` on job creation: a repeated request gets the job the first one created,
its answer marked ``Idempotent-Replayed: true``.

The key is scoped to the tenant and kept for ``settings.result_ttl_s`` (as long as the job
it names). A request claims its key with one ``SET NX`` before it does anything, so among
concurrent requests with the same key exactly one creates a job; the others wait for it and
answer with that job. The claim records a fingerprint of the request: a later request with
the same key and a different fingerprint is refused (409 ``conflict``).

The fingerprint is a SHA-256 over the request's parameters: for JSON, the body in canonical
form (keys sorted); for a multipart upload, the form fields, the file's name and the file's
content (read once from the spooled upload before anything is stored).

Each claim is one key, ``colorize:idempotency:{tenant}:<sha256 of key>`` (:mod:`shared.redis_keys`).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request
from redis import Redis

from api.bodies import read_json
from shared.errors import Conflict, InvalidRequest
from shared.redis_keys import NAMESPACE, RedisKeys

HEADER = "Idempotency-Key"
# Marks the answer to a repeated key: the job an earlier request created.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# A claim whose request never completes (the process died mid-way) frees the key after this.
PENDING_TTL_S = 300
# How long a request waits for a concurrent one with the same key to create its job.
WAIT_FOR_OWNER_S = 30.0
POLL_S = 0.05
READ_CHUNK_BYTES = 1024 * 1024

# KEYS: claim   ARGV: owner record ttl   -> 1 replaced, 0 the claim is not ours (anymore)
_LUA_SET_IF_OWNER = """
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# KEYS: claim   ARGV: owner   -> 1 deleted
_LUA_DELETE_IF_OWNER = """
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def idempotency_key(request: Request) -> str | None:
    """The request's key (None without the header); InvalidRequest when malformed."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidRequest(f"'{HEADER}' must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def request_fingerprint(request: Request) -> str:
    """SHA-256 of what the request asks for (see the module docstring)."""
    digest = hashlib.sha256()
    if request.mimetype == "multipart/form-data":
        digest.update(b"form\0")
        # A part without a name comes as None, which does not sort beside the names.
        fields = sorted(
            ((name, value) for name, values in request.form.lists() for value in values),
            key=lambda field: (field[0] is not None, field[0] or "", field[1]),
        )
        digest.update(json.dumps(fields).encode())
        upload = request.files.get("file")
        if upload is not None:
            digest.update(b"\0" + (upload.filename or "").encode() + b"\0")
            while chunk := upload.stream.read(READ_CHUNK_BYTES):
                digest.update(chunk)
            upload.stream.seek(0)
    else:
        digest.update(b"json\0")
        body = read_json()
        digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ours to fulfil, or the job an earlier request created."""

    key: str
    owner: str | None  # set when this request holds the key and must create the job
    job_id: str | None  # set when an earlier request with the key created this job


class IdempotencyStore:
    def __init__(
        self,
        redis: Redis,
        ttl_s: int,
        namespace: str = NAMESPACE,
        sleep: Callable[[float], None] = time.sleep,
        wait_s: float = WAIT_FOR_OWNER_S,
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._keys = RedisKeys(namespace)
        self._sleep = sleep
        self._wait_s = wait_s
        self._set_if_owner = redis.register_script(_LUA_SET_IF_OWNER)
        self._delete_if_owner = redis.register_script(_LUA_DELETE_IF_OWNER)

    def redis_key(self, tenant: str, key: str) -> str:
        return self._keys.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest())

    def claim(self, tenant: str, key: str, fingerprint: str) -> Claim:
        """Take the key for this request, or the job id it already stands for.

        Conflict when the key was used for a different request, or when the request holding
        it does not finish within the wait.
        """
        redis_key = self.redis_key(tenant, key)
        owner = uuid.uuid4().hex
        pending = _encode({"fingerprint": fingerprint, "owner": owner, "job_id": None})
        deadline = time.monotonic() + self._wait_s
        while True:
            if self.redis.set(redis_key, pending, nx=True, ex=min(PENDING_TTL_S, self.ttl_s)):
                return Claim(redis_key, owner=owner, job_id=None)
            raw = self.redis.get(redis_key)
            if raw is None:
                continue  # released or expired between the two calls: claim again
            record = json.loads(raw)
            if record["fingerprint"] != fingerprint:
                raise Conflict(f"the {HEADER} was already used with a different request", header=HEADER)
            if record["job_id"]:
                return Claim(redis_key, owner=None, job_id=record["job_id"])
            if time.monotonic() > deadline:
                raise Conflict(f"a request with this {HEADER} is still being processed; retry later", header=HEADER)
            self._sleep(POLL_S)

    def fulfil(self, claim: Claim, fingerprint: str, job_id: str) -> None:
        """Bind the claimed key to the job it created, for ``ttl_s``."""
        record = _encode({"fingerprint": fingerprint, "owner": claim.owner, "job_id": job_id})
        self._set_if_owner(keys=[claim.key], args=[_holder(claim), record, self.ttl_s])

    def release(self, claim: Claim) -> None:
        """Give the key back after the request failed, so that a retry may create the job."""
        self._delete_if_owner(keys=[claim.key], args=[_holder(claim)])

    def forget(self, claim: Claim) -> None:
        """Drop a key whose job no longer exists."""
        self.redis.delete(claim.key)


def _holder(claim: Claim) -> str:
    if claim.owner is None:
        raise ValueError("only the request holding a key fulfils or releases it; this one found a job")
    return claim.owner


def _encode(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))
