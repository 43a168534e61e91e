"""What workers' housekeeping reads in Redis: the purge index, the stall watch, worker heartbeats.

The job and upload stores add to the purge index and the stall watch as part of their own
atomic changes (a job's expiry, a job moving or ending); housekeeping leases what is due here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from redis import Redis

from shared.redis_keys import NAMESPACE, KeyedScript, RedisKeys

# Workers record a heartbeat this often; one silent for longer than the stale time is gone.
HEARTBEAT_INTERVAL_S = 5
WORKER_STALE_AFTER_S = 20

# ARGV: now lease_s limit   -> members of the deadline set now due, each leased for lease_s seconds
_LUA_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', deadlines, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', deadlines, 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""


class _Deadlines:
    """A sorted set of members by deadline, from which callers lease what is due."""

    def __init__(self, redis: Redis, key: str, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.key = key
        self._clock = clock
        self._lease_due = KeyedScript(redis, ["deadlines"], _LUA_LEASE_DUE)

    def lease_due(self, limit: int, lease_s: float) -> list[str]:
        """Members whose deadline has passed, each leased to this caller for ``lease_s`` seconds
        (other callers do not get it meanwhile)."""
        members = self._lease_due({"deadlines": self.key}, [repr(self._clock()), lease_s, limit])
        return [m.decode() for m in members]

    def forget(self, member: str) -> None:
        self.redis.zrem(self.key, member)


@dataclass(frozen=True)
class PurgeTarget:
    kind: str  # "job" | "upload"
    tenant: str
    id: str
    multipart_id: str | None
    member: str

    @classmethod
    def parse(cls, member: str) -> PurgeTarget:
        kind, tenant, rest = member.split(":", 2)
        if kind == "upload":
            object_id, _, multipart_id = rest.partition(":")
            return cls(kind, tenant, object_id, multipart_id or None, member)
        return cls(kind, tenant, rest, None, member)


class PurgeIndex:
    """Owners of stored objects (jobs, uploads) by the time their objects are to be deleted."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time, namespace: str = NAMESPACE) -> None:
        self._deadlines = _Deadlines(redis, RedisKeys(namespace).purge, clock)

    def lease_due(self, limit: int = 100, lease_s: int = 300) -> list[PurgeTarget]:
        """Owners whose time is up, each leased to this caller for ``lease_s`` seconds."""
        return [PurgeTarget.parse(m) for m in self._deadlines.lease_due(limit, lease_s)]

    def forget(self, target: PurgeTarget) -> None:
        self._deadlines.forget(target.member)


class StallWatch:
    """Unfinished jobs, each by the time it counts as stalled unless it moves before."""

    def __init__(
        self, redis: Redis, stall_after_s: int, clock: Callable[[], float] = time.time, namespace: str = NAMESPACE
    ) -> None:
        self.stall_after_s = stall_after_s
        self._deadlines = _Deadlines(redis, RedisKeys(namespace).active, clock)

    def lease_stalled(self, limit: int = 100) -> list[str]:
        """Ids of unfinished jobs that have not moved for ``stall_after_s``, each leased to the
        caller for as long again."""
        return self._deadlines.lease_due(limit, self.stall_after_s)

    def forget(self, job_id: str) -> None:
        """Stop watching a job (it has ended or expired)."""
        self._deadlines.forget(job_id)


class WorkerHeartbeats:
    """Which workers are alive: each records a heartbeat every ``HEARTBEAT_INTERVAL_S``."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self.key = RedisKeys(namespace).workers
        self._clock = clock

    def record(self, worker: str, stale_after_s: float = WORKER_STALE_AFTER_S) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.key, {worker: self._clock()})
        pipe.zremrangebyscore(self.key, "-inf", self._clock() - stale_after_s)
        pipe.expire(self.key, int(stale_after_s) + 1)
        pipe.execute()

    def forget(self, worker: str) -> None:
        self.redis.zrem(self.key, worker)

    def live(self, stale_after_s: float = WORKER_STALE_AFTER_S) -> list[str]:
        # The service's Redis clients answer bytes (they are made without decode_responses).
        members = cast("list[bytes]", self.redis.zrangebyscore(self.key, self._clock() - stale_after_s, "+inf"))
        return [m.decode() for m in members]
