"""Per-tenant quotas and request rate limits, kept in Redis so every API process and worker shares them.

Each is off when its setting in ``settings.quotas`` is 0:

- request rate: a token bucket per tenant (refilled at ``requests_per_s``, holding at most
  ``request_burst``), taken from by one Lua script per request, so concurrent API processes
  never overspend it;
- jobs in flight: queued or running jobs per tenant. A submission reserves its job's place
  before anything is stored and gives it back when the job is not created;
- images per day: images taken in per tenant and UTC day. A single-image job is counted when
  it is submitted; an archive's entries one by one while the worker expands it, and the
  entries that arrive after the quota ran out become items failed with ``quota_exceeded``;
- wrong API keys per client address (not per tenant: a wrong key names none), a token bucket
  like the request rate's, taken from by each failed authentication; while it is empty the
  address's requests with a key are refused before the key is looked at.

The storage quota (bytes kept) is :mod:`shared.tenancy.storage_quota`.

The counters live under ``colorize:quota:{tenant}:*`` (:mod:`shared.redis_keys`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from redis import Redis

from shared.errors import QuotaExceeded, RateLimited
from shared.jobs.records import TERMINAL_STATUSES
from shared.jobs.store import JobStore
from shared.redis_keys import KeyedScript, RedisKeys
from shared.setting_types import Quotas

DAY_S = 86_400
# When a job finishes is unknown; clients polling a refused submission retry this often.
IN_FLIGHT_RETRY_AFTER_S = 10
# A reservation whose job never appeared (its request failed between reserving and creating
# the job, or the API process died there) stops counting after this long.
RESERVATION_GRACE_S = 300

# ARGV: now rate burst cost   -> {1 taken (cost 0: one is there) | 0 refused, seconds until a token is there}
_LUA_TAKE_TOKEN = """
local now, rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', bucket, 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
-- A clock behind the last caller's (another API machine) refills nothing rather than draining.
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local taken, wait = 0, (1 - tokens) / rate
if tokens >= 1 then
  tokens, taken, wait = tokens - cost, 1, 0
end
redis.call('HSET', bucket, 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
-- A bucket left alone until full is the same as no bucket.
redis.call('PEXPIRE', bucket, math.ceil(burst / rate * 1000) + 1000)
return {taken, tostring(wait)}
"""

# ARGV: limit ttl   -> 1 taken, 0 the quota is used up
_LUA_TAKE_IMAGE = """
local used = tonumber(redis.call('GET', day_counter) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', day_counter)
redis.call('EXPIRE', day_counter, tonumber(ARGV[2]))
return 1
"""


def utc_day(timestamp: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(timestamp))


def seconds_to_next_utc_day(timestamp: float) -> int:
    return DAY_S - int(timestamp) % DAY_S


class QuotaStore:
    """The quotas of ``settings.quotas`` for every tenant, counted in one Redis database."""

    def __init__(
        self,
        redis: Redis,
        quotas: Quotas,
        jobs: JobStore,
        clock: Callable[[], float] = time.time,
        namespace: str | None = None,
    ) -> None:
        """``namespace``: of the keys; None: that of ``jobs``, whose jobs the quotas count."""
        self.redis = redis
        self.quotas = quotas
        self._jobs = jobs
        self._clock = clock
        self._keys = RedisKeys(jobs.keys.namespace if namespace is None else namespace)
        self._take_token = KeyedScript(redis, ["bucket"], _LUA_TAKE_TOKEN)
        self._take_image = KeyedScript(redis, ["day_counter"], _LUA_TAKE_IMAGE)

    def _key(self, tenant: str, name: str) -> str:
        return self._keys.quota(tenant, name)

    # request rate

    def take_request(self, tenant: str) -> None:
        """Count one API request of ``tenant``; RateLimited when its bucket is empty."""
        rate = self.quotas.requests_per_s
        if not rate:
            return
        burst = max(1, self.quotas.request_burst)
        taken, wait = self._take_token({"bucket": self._key(tenant, "rate")}, [repr(self._clock()), rate, burst, 1])
        if not taken:
            raise RateLimited(
                f"too many requests: at most {rate:g} per second (bursts of {burst})",
                retry_after_s=max(1, math.ceil(float(wait))),
                limit_per_s=rate,
                burst=burst,
            )

    # wrong API keys per client address

    def check_auth_failures(self, address: str) -> None:
        """RateLimited while ``address`` has used up its wrong keys; counts nothing."""
        self._auth_failure(address, cost=0)

    def take_auth_failure(self, address: str) -> None:
        """Count one wrong key from ``address``; RateLimited when it had none left."""
        self._auth_failure(address, cost=1)

    def _auth_failure(self, address: str, cost: int) -> None:
        rate = self.quotas.auth_failures_per_s
        if not rate:
            return
        burst = max(1, self.quotas.auth_failure_burst)
        bucket = self._keys.auth_failures(address)
        taken, wait = self._take_token({"bucket": bucket}, [repr(self._clock()), rate, burst, cost])
        if not taken:
            raise RateLimited(
                f"too many requests with a wrong API key from this address: at most {rate:g} per second "
                f"(bursts of {burst})",
                retry_after_s=max(1, math.ceil(float(wait))),
                limit_per_s=rate,
                burst=burst,
            )

    # jobs in flight

    @contextmanager
    def admit_job(self, tenant: str, job_id: str) -> Iterator[None]:
        """Hold a place for job ``job_id`` while the body creates it; QuotaExceeded when the
        tenant has used up its images for today or has too many jobs in flight.

        The place is given back when the body raises; once the job exists it counts until the
        job reaches a final status.
        """
        self.check_images_left(tenant)
        limit = self.quotas.max_jobs_in_flight
        if not limit:
            yield
            return
        key = self._key(tenant, "inflight")
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {job_id: self._clock()})
        pipe.expire(key, self._jobs.settings.result_ttl_s + RESERVATION_GRACE_S)
        pipe.execute()
        # Reserve, then count: two racing submissions can both be refused at the limit, but
        # never both admitted past it.
        if self.jobs_in_flight(tenant) > limit:
            self.redis.zrem(key, job_id)
            raise QuotaExceeded(
                f"{limit} jobs are already queued or running; submit more when some have finished",
                retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
                quota="jobs_in_flight",
                limit=limit,
            )
        try:
            yield
        except BaseException:
            self.redis.zrem(key, job_id)
            raise

    def jobs_in_flight(self, tenant: str) -> int:
        """Queued or running jobs of ``tenant``, places reserved for jobs being created included."""
        key = self._key(tenant, "inflight")
        # The service's Redis clients answer bytes (they are made without decode_responses).
        members = cast("list[tuple[bytes, float]]", self.redis.zrange(key, 0, -1, withscores=True))
        if not members:
            return 0
        statuses = self._jobs.statuses([job_id.decode() for job_id, _ in members])
        stale_before = self._clock() - RESERVATION_GRACE_S
        gone = [
            job_id
            for (job_id, reserved_at), status in zip(members, statuses)
            if (status is None and reserved_at < stale_before) or status in TERMINAL_STATUSES
        ]
        if gone:
            self.redis.zrem(key, *gone)
        return len(members) - len(gone)

    def forget_job(self, tenant: str, job_id: str) -> None:
        """Give back a deleted job's place at once (a place without a job counts for a grace time)."""
        self.redis.zrem(self._key(tenant, "inflight"), job_id)

    # images per day

    def check_images_left(self, tenant: str) -> None:
        """QuotaExceeded when ``tenant`` has used up today's images."""
        limit = self.quotas.max_images_per_day
        if limit and self.images_today(tenant) >= limit:
            raise self._images_used_up(limit)

    def take_image(self, tenant: str) -> None:
        """Count one image taken in for ``tenant`` today; QuotaExceeded (nothing counted) when none is left."""
        limit = self.quotas.max_images_per_day
        if not limit:
            return
        key = self._key(tenant, f"images:{utc_day(self._clock())}")
        if not self._take_image({"day_counter": key}, [limit, 2 * DAY_S]):
            raise self._images_used_up(limit)

    def images_today(self, tenant: str) -> int:
        return int(self.redis.get(self._key(tenant, f"images:{utc_day(self._clock())}")) or 0)

    def _images_used_up(self, limit: int) -> QuotaExceeded:
        return QuotaExceeded(
            f"the daily quota of {limit} images is used up; it renews at 00:00 UTC",
            retry_after_s=seconds_to_next_utc_day(self._clock()),
            quota="images_per_day",
            limit=limit,
        )
