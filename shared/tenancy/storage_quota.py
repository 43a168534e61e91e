"""The bytes each tenant keeps in storage, counted in Redis: its storage quota.

Every stored object has an owner, the job or upload whose expiry deletes it (the purge index,
:mod:`shared.jobs.upkeep`): ``upload:<id>`` for a presigned upload, ``job:<id>`` for a source sent
with the request and for results. Bytes are counted per owner and in a total per tenant:

- an upload reserves its declared size when it is created (bytes in flight), refused with
  ``quota_exceeded`` when the total would pass ``quotas.max_stored_bytes``, and is settled
  at its real size when completed;
- a source sent with the request is reserved, likewise refused, before it is stored;
- results are added as the worker records their outcomes, a batch's in one call (a job once
  admitted runs to its end; the tenant's next submission is refused while the total is at or
  over the quota);
- purging an owner's objects releases everything counted for it.

Counts err on the side of the tenant's total being high: a result counted by an attempt that
died before recording its outcome counts again when the item is done again, until its job is
purged.
"""

from __future__ import annotations

from redis import Redis

from shared.errors import QuotaExceeded
from shared.redis_keys import NAMESPACE, KeyedScript, RedisKeys
from shared.setting_types import Quotas

# Stored bytes are freed as jobs and uploads expire; there is no sooner time to name.
RETRY_AFTER_S = 3600

# ARGV: owner bytes limit   -> {1 reserved | 0 refused, the total (after, or as it stands)}
_LUA_RESERVE = """
local used = tonumber(redis.call('GET', total) or '0')
local size, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if limit > 0 and (used + size > limit or (size == 0 and used >= limit)) then return {0, used} end
if size ~= 0 then
  redis.call('HINCRBY', owners, ARGV[1], size)
  used = redis.call('INCRBY', total, size)
end
return {1, used}
"""

# ARGV: owner   -> the bytes released
_LUA_RELEASE = """
local amount = tonumber(redis.call('HGET', owners, ARGV[1]) or '0')
redis.call('HDEL', owners, ARGV[1])
if amount ~= 0 then redis.call('DECRBY', total, amount) end
return amount
"""


# ARGV: owner bytes   -> the bytes counted for the owner before
_LUA_SETTLE = """
local before = tonumber(redis.call('HGET', owners, ARGV[1]) or '0')
redis.call('HSET', owners, ARGV[1], ARGV[2])
redis.call('INCRBY', total, tonumber(ARGV[2]) - before)
return before
"""


def job_owner(job_id: str) -> str:
    return f"job:{job_id}"


def upload_owner(upload_id: str) -> str:
    return f"upload:{upload_id}"


class StoredBytes:
    """Stored bytes per tenant and owner, in one Redis database."""

    def __init__(self, redis: Redis, quotas: Quotas, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self.limit = quotas.max_stored_bytes
        self._keys = RedisKeys(namespace)
        self._reserve = KeyedScript(redis, ["total", "owners"], _LUA_RESERVE)
        self._release = KeyedScript(redis, ["total", "owners"], _LUA_RELEASE)
        self._settle = KeyedScript(redis, ["total", "owners"], _LUA_SETTLE)

    def _tenant_keys(self, tenant: str) -> dict[str, str]:
        return {"total": self._keys.quota(tenant, "stored"), "owners": self._keys.quota(tenant, "stored-by")}

    def reserve(self, tenant: str, owner: str, size: int) -> None:
        """Count ``size`` bytes about to be stored for ``owner``; QuotaExceeded (nothing counted)
        when the tenant's total would pass the quota. ``size`` 0: only whether the tenant is under it."""
        reserved, used = self._reserve(self._tenant_keys(tenant), [owner, size, self.limit])
        if not reserved:
            raise QuotaExceeded(
                f"the storage quota of {self.limit} bytes would be exceeded: {int(used)} bytes are kept "
                f"(uploads, sources and results until their jobs expire) and {size} more were asked for",
                retry_after_s=RETRY_AFTER_S,
                quota="stored_bytes",
                limit=self.limit,
                used=int(used),
                requested=size,
            )

    def settle(self, tenant: str, owner: str, size: int) -> None:
        """Count exactly ``size`` bytes for ``owner`` (what an upload turned out to hold)."""
        self._settle(self._tenant_keys(tenant), [owner, size])

    def add(self, tenant: str, owner: str, size: int) -> None:
        """Count ``size`` more bytes stored for ``owner``, whatever the quota."""
        keys = self._tenant_keys(tenant)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(keys["owners"], owner, size)
        pipe.incrby(keys["total"], size)
        pipe.execute()

    def release(self, tenant: str, owner: str) -> int:
        """Forget what was counted for ``owner`` (its objects are deleted); returns the bytes released."""
        return int(self._release(self._tenant_keys(tenant), [owner]))

    def used(self, tenant: str) -> int:
        return int(self.redis.get(self._keys.quota(tenant, "stored")) or 0)

    def counted(self, tenant: str, owner: str) -> int:
        return int(self.redis.hget(self._keys.quota(tenant, "stored-by"), owner) or 0)
