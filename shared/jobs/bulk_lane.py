"""The bulk lane: chunks of large jobs waiting their turn, shared between tenants in Redis.

Tenants take turns, and each tenant's jobs take turns within its share: a tenant with one
job gets as many chunks run as a tenant with ten, and a job submitted behind a large one
starts with the next turn, not after it. The Celery queue holds one anonymous turn message
per waiting chunk (:func:`shared.queue.contract.enqueue_turns`); which chunk a turn runs is decided
only as it starts (:meth:`BulkLane.claim`), so the order of the messages does not matter.

A turn's claim is kept under its task id until the turn ends, so a turn redelivered after its
worker died, or retried, runs the chunk it had claimed. Turns and chunks can drift apart (a
message lost by the broker, a claim whose message was lost): a turn that finds no chunk ends
at once, and a chunk left without a turn stalls its job, whose waiting chunks the stall watch
replaces with its whole outstanding work (:meth:`BulkLane.forget`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis import Redis

from shared.redis_keys import NAMESPACE, KeyedScript, RedisKeys

# ARGV: tenant, job id, 1 to put the chunks first (else last), ttl, chunk JSON...
_PUSH = """
local tenant, job, first, ttl = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
if first then
  for i = #ARGV, 5, -1 do redis.call('LPUSH', chunks_key, ARGV[i]) end
else
  for i = 5, #ARGV do redis.call('RPUSH', chunks_key, ARGV[i]) end
end
redis.call('EXPIRE', chunks_key, ttl)
if not redis.call('LPOS', jobs_key, job) then redis.call('RPUSH', jobs_key, job) end
if not redis.call('LPOS', tenants_key, tenant) then redis.call('RPUSH', tenants_key, tenant) end
return 0
"""

# ARGV: tenants' jobs key prefix, jobs' chunks key prefix, ttl
#   -> "<job id> <chunk JSON>", or nil when no chunk waits
# The next tenant in turn, its next job in turn, that job's first chunk; tenants and jobs
# left with nothing leave the rings. Which tenant and job come next is known only here, so
# their keys are built here, from the prefixes RedisKeys gives (all in the slot of {bulk}).
_CLAIM = """
local held = redis.call('GET', claim_key)
if held then return held end
local jobs_prefix, chunks_prefix, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
while true do
  local tenant = redis.call('LMOVE', tenants_key, tenants_key, 'LEFT', 'RIGHT')
  if not tenant then return false end
  local jobs_key = jobs_prefix .. tenant
  local job = redis.call('LMOVE', jobs_key, jobs_key, 'LEFT', 'RIGHT')
  local chunk = false
  if job then
    local chunks_key = chunks_prefix .. job
    chunk = redis.call('LPOP', chunks_key)
    if redis.call('LLEN', chunks_key) == 0 then redis.call('LREM', jobs_key, 0, job) end
  end
  if redis.call('LLEN', jobs_key) == 0 then redis.call('LREM', tenants_key, 0, tenant) end
  if chunk then
    local claimed = job .. ' ' .. chunk
    redis.call('SET', claim_key, claimed, 'EX', ttl)
    return claimed
  end
end
"""

# ARGV: tenant, job id
_FORGET = """
redis.call('DEL', chunks_key)
redis.call('LREM', jobs_key, 0, ARGV[2])
if redis.call('LLEN', jobs_key) == 0 then redis.call('LREM', tenants_key, 0, ARGV[1]) end
return 0
"""


@dataclass(frozen=True)
class Claimed:
    """The chunk a turn runs: the job, its items, and when the chunk joined the lane."""

    job_id: str
    indices: list[int]
    enqueued_at: float


class BulkLane:
    """Bulk chunks waiting their turn, in one Redis database."""

    def __init__(
        self, redis: Redis, ttl_s: int, clock: Callable[[], float] = time.time, namespace: str = NAMESPACE
    ) -> None:
        self.redis = redis
        # How long a claim and a job's waiting chunks are kept at most (the jobs' lifetime).
        self.ttl_s = ttl_s
        self._clock = clock
        self._keys = RedisKeys(namespace)
        self._push = KeyedScript(redis, ("tenants_key", "jobs_key", "chunks_key"), _PUSH)
        self._claim = KeyedScript(redis, ("tenants_key", "claim_key"), _CLAIM)
        self._forget = KeyedScript(redis, ("tenants_key", "jobs_key", "chunks_key"), _FORGET)

    def _ring_keys(self, tenant: str, job_id: str) -> dict[str, str]:
        return {
            "tenants_key": self._keys.bulk_tenants,
            "jobs_key": self._keys.bulk_tenant_jobs(tenant),
            "chunks_key": self._keys.bulk_job_chunks(job_id),
        }

    def push(self, tenant: str, job_id: str, chunks: Sequence[Sequence[int]], first: bool = False) -> None:
        """Add chunks to a job's waiting ones: last, or ``first`` (work handed back, resumed next)."""
        if not chunks:
            return
        now = self._clock()
        encoded = [json.dumps({"items": list(chunk), "at": now}, separators=(",", ":")) for chunk in chunks]
        self._push(self._ring_keys(tenant, job_id), [tenant, job_id, "1" if first else "0", self.ttl_s, *encoded])

    def claim(self, turn_id: str) -> Claimed | None:
        """The chunk turn ``turn_id`` runs: the one it claimed before, else the next in turn."""
        claimed = self._claim(
            {"tenants_key": self._keys.bulk_tenants, "claim_key": self._keys.bulk_turn(turn_id)},
            [self._keys.bulk_tenant_jobs_prefix, self._keys.bulk_job_chunks_prefix, self.ttl_s],
        )
        if claimed is None:
            return None
        job_id, _, chunk = claimed.decode().partition(" ")
        data = json.loads(chunk)
        return Claimed(job_id=job_id, indices=[int(i) for i in data["items"]], enqueued_at=float(data["at"]))

    def release(self, turn_id: str) -> None:
        """The turn has ended: its chunk is done with."""
        self.redis.delete(self._keys.bulk_turn(turn_id))

    def forget(self, tenant: str, job_id: str) -> None:
        """Drop a job's waiting chunks (the stall watch is about to hand its whole outstanding
        work back)."""
        self._forget(self._ring_keys(tenant, job_id), [tenant, job_id])

    def waiting(self, job_id: str) -> int:
        """Chunks of the job waiting their turn."""
        return int(self.redis.llen(self._keys.bulk_job_chunks(job_id)))
