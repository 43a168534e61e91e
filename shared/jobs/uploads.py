"""Presigned uploads in Redis: created pending, completed once the object is stored, used by one job.

An upload's record expires ``settings.result_ttl_s`` after creation; the purge index deletes
its object then (or, once a job uses it, when that job expires).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from shared.errors import Conflict, NotFound
from shared.ids import new_id
from shared.redis_keys import KeyedScript, RedisKeys, upload_purge_member
from shared.settings import Settings


class UploadState(StrEnum):
    PENDING = "pending"
    COMPLETE = "complete"
    USED = "used"


@dataclass(frozen=True)
class Upload:
    id: str
    tenant: str
    filename: str | None
    size: int
    key: str
    multipart_id: str | None
    state: UploadState
    job_id: str | None
    created_at: float
    expires_at: float


# ARGV: job_id   -> 1 claimed, 0 not complete, -1 missing, -2 already used
_LUA_CLAIM = f"""
local state = redis.call('HGET', upload_key, 'state')
if not state then return -1 end
if state == '{UploadState.USED}' then return -2 end
if state ~= '{UploadState.COMPLETE}' then return 0 end
redis.call('HSET', upload_key, 'state', '{UploadState.USED}', 'job_id', ARGV[1])
return 1
"""


class UploadStore:
    """Upload records of one Redis database."""

    def __init__(
        self, redis: Redis, settings: Settings, clock: Callable[[], float] = time.time, namespace: str | None = None
    ) -> None:
        """``namespace``: of the keys; None: ``settings.redis_namespace``."""
        self.redis = redis
        self.settings = settings
        self.keys = RedisKeys(settings.redis_namespace if namespace is None else namespace)
        self._clock = clock
        self._claim = KeyedScript(redis, ["upload_key"], _LUA_CLAIM)

    def create(
        self,
        *,
        tenant: str,
        filename: str | None,
        size: int,
        key: str,
        multipart_id: str | None,
        upload_id: str | None = None,
    ) -> Upload:
        upload_id = upload_id or new_id()
        now = self._clock()
        expires_at = now + self.settings.result_ttl_s
        fields: dict[FieldT, EncodableT] = {
            "id": upload_id,
            "tenant": tenant,
            "filename": filename or "",
            "size": size,
            "key": key,
            "multipart_id": multipart_id or "",
            "state": UploadState.PENDING,
            "job_id": "",
            "created_at": repr(now),
            "expires_at": repr(expires_at),
        }
        record = self.keys.upload(upload_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record, mapping=fields)
        pipe.expireat(record, int(expires_at) + 1)
        pipe.zadd(self.keys.purge, {upload_purge_member(tenant, upload_id, multipart_id): expires_at})
        pipe.execute()
        return self.get(upload_id)

    def get(self, upload_id: str, tenant: str | None = None) -> Upload:
        """The upload, or NotFound (also when it belongs to another tenant)."""
        # The service's Redis clients answer bytes (they are made without decode_responses).
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys.upload(upload_id)))
        if not raw or (tenant is not None and raw[b"tenant"].decode() != tenant):
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        text = {k.decode(): v.decode() for k, v in raw.items()}
        return Upload(
            id=text["id"],
            tenant=text["tenant"],
            filename=text["filename"] or None,
            size=int(text["size"]),
            key=text["key"],
            multipart_id=text["multipart_id"] or None,
            state=UploadState(text["state"]),
            job_id=text["job_id"] or None,
            created_at=float(text["created_at"]),
            expires_at=float(text["expires_at"]),
        )

    def mark_complete(self, upload_id: str) -> None:
        """pending -> complete (idempotent); Conflict once a job has used it."""
        record = self.keys.upload(upload_id)
        state = cast("bytes | None", self.redis.hget(record, "state"))
        if state is None:
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        if state.decode() == UploadState.USED:
            raise Conflict(f"upload {upload_id} has already been used by a job")
        self.redis.hset(record, "state", UploadState.COMPLETE)

    def claim(self, upload_id: str, job_id: str) -> None:
        """Bind a complete upload to one job; Conflict when incomplete or already used."""
        result = self._claim({"upload_key": self.keys.upload(upload_id)}, [job_id])
        if result == -1:
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        if result == -2:
            raise Conflict(f"upload {upload_id} has already been used by a job", upload_id=upload_id)
        if result == 0:
            raise Conflict(f"upload {upload_id} is not complete", upload_id=upload_id)

    def release(self, upload_id: str) -> None:
        """Undo a claim whose job could not be created."""
        self.redis.hset(self.keys.upload(upload_id), mapping={"state": UploadState.COMPLETE, "job_id": ""})

    def extend_expiry(self, upload: Upload, expires_at: float) -> None:
        """Keep an upload's object until its job's own expiry (its expander may still read it)."""
        member = upload_purge_member(upload.tenant, upload.id, upload.multipart_id)
        self.redis.zadd(self.keys.purge, {member: expires_at}, gt=True)
