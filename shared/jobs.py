"""Job and item state in Redis: records, atomic progress, validated state transitions.

Every change that reads and then writes (an item finishing, a job finishing, a cancel) runs as
one Lua script, so concurrent workers, redelivered tasks and the API never double-count an
item nor finish a job twice. Every key carries the job's expiry (``settings.result_ttl_s``
after creation, renewed when the job finishes); the storage objects of expired jobs and
uploads are deleted by :meth:`JobStore.purge_due`, driven by the ``colorize:purge`` index.

Redis layout (``{id}`` is a hash tag, so one job's keys share a cluster slot)::

    colorize:job:{id}            HASH  id tenant status model temperature source_filename
                                       source_kind source_key total done failed expanded
                                       created_at started_at finished_at expires_at
                                       error_code error_message callback_url webhook_events
    colorize:job:{id}:items      HASH  index -> JSON {"path", "output_path", "size"}
    colorize:job:{id}:status     HASH  index -> "done" | "failed"   (absent: pending)
    colorize:job:{id}:errors     HASH  index -> JSON {"code", "message"}
    colorize:job:{id}:attempts   HASH  index -> processing attempts started
    colorize:upload:{id}         HASH  id tenant filename size key multipart_id state job_id
                                       created_at expires_at
    colorize:purge               ZSET  "job:<tenant>:<id>" | "upload:<tenant>:<id>:<multipart id>"
                                       -> unix time after which its storage is deleted
    colorize:workers             ZSET  worker name -> unix time of its last heartbeat
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from redis import Redis

from shared.errors import Conflict, ItemError, NotFound, ColorizeError
from shared.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "colorize"
# Workers record a heartbeat this often; one silent for longer than the stale time is gone.
HEARTBEAT_INTERVAL_S = 5
WORKER_STALE_AFTER_S = 20

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELED = "succeeded", "partially_succeeded", "failed", "canceled"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELED)
TERMINAL_STATUSES = frozenset({SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELED})

# The only moves a job may make; the Lua scripts are generated from this table, so Redis
# enforces exactly what check_transition() states.
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, FAILED, CANCELED}),
    RUNNING: frozenset({SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELED}),
    SUCCEEDED: frozenset(),
    PARTIALLY_SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}

ITEM_PENDING, ITEM_DONE, ITEM_FAILED = "pending", "done", "failed"
# Shown for items a canceled job will never process.
ITEM_CANCELED = "canceled"

UPLOAD_PENDING, UPLOAD_COMPLETE, UPLOAD_USED = "pending", "complete", "used"


class InvalidTransition(Conflict):
    """A job was asked to move to a status its current one does not allow."""


def check_transition(current: str, new: str) -> None:
    """Raise InvalidTransition unless a job in ``current`` may move to ``new``."""
    if current not in TRANSITIONS or new not in TRANSITIONS:
        raise InvalidTransition(f"unknown job status {current!r} or {new!r}")
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} job cannot become {new}", status=current)


def new_id() -> str:
    return uuid.uuid4().hex


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    status: str
    model: str
    temperature: float | None
    source_filename: str | None
    source_kind: str
    source_key: str
    total: int
    done: int
    failed: int
    expanded: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float
    error: dict[str, str] | None
    callback_url: str | None = None
    webhook_events: tuple[str, ...] = ()

    @property
    def pending(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> float:
        if self.status in (SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED) and self.pending == 0:
            return 1.0
        if not self.total:
            return 0.0
        return round((self.done + self.failed) / self.total, 4)


@dataclass(frozen=True)
class NewItem:
    """An item as the expander registers it; ``error`` set means it failed before processing."""

    index: int
    path: str
    output_path: str
    size: int | None
    error: ItemError | None = None


@dataclass(frozen=True)
class Item:
    index: int
    path: str
    output_path: str
    size: int | None
    status: str
    error: dict[str, str] | None


@dataclass(frozen=True)
class ItemOutcome:
    counted: bool  # False: the item was already done/failed (a redelivered task), nothing changed
    finished: bool  # True for exactly one caller: the one whose change finished the job


@dataclass(frozen=True)
class Upload:
    id: str
    tenant: str
    filename: str | None
    size: int
    key: str
    multipart_id: str | None
    state: str
    job_id: str | None
    created_at: float
    expires_at: float


class JobListener:
    """Told of changes once they are committed (webhooks, metrics): the start and the finish
    of a job reach exactly one listener call each, an item's outcome one per item."""

    def job_started(self, job_id: str) -> None:
        pass

    def item_finished(self, job_id: str, index: int, outcome: str, error_code: str | None) -> None:
        pass

    def job_finished(self, job_id: str) -> None:
        pass


# --- Lua ----------------------------------------------------------------------------------

def _lua_transitions() -> str:
    rows = []
    for status, targets in TRANSITIONS.items():
        inner = ", ".join(f"['{t}'] = true" for t in sorted(targets))
        rows.append(f"['{status}'] = {{{inner}}}")
    return "local allowed = {" + ", ".join(rows) + "}\n"


# KEYS: job items status errors attempts purge   ARGV[1]: now   ARGV[2]: ttl seconds
_LUA_COMMON = _lua_transitions() + """
local function renew_expiry(expires_at)
  redis.call('HSET', KEYS[1], 'expires_at', expires_at)
  for i = 1, 5 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIREAT', KEYS[i], math.ceil(expires_at)) end
  end
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('ZADD', KEYS[6], expires_at, 'job:' .. tenant .. ':' .. id)
end

local function set_status(new, now)
  local current = redis.call('HGET', KEYS[1], 'status')
  if not current or not allowed[current] or not allowed[current][new] then return false end
  redis.call('HSET', KEYS[1], 'status', new)
  if new == 'running' then redis.call('HSET', KEYS[1], 'started_at', now) end
  if new ~= 'running' and new ~= 'queued' then
    redis.call('HSET', KEYS[1], 'finished_at', now)
    renew_expiry(tonumber(now) + tonumber(ARGV[2]))
  end
  return true
end

-- Finish the job if expansion is over and every item is terminal; true only for the caller
-- whose call made that happen.
local function maybe_finish(now)
  local job = redis.call('HMGET', KEYS[1], 'status', 'expanded', 'total', 'done', 'failed', 'error_code')
  local status, expanded = job[1], job[2]
  if status ~= 'running' and status ~= 'queued' then return false end
  if expanded ~= '1' then return false end
  local total, done, failed = tonumber(job[3]), tonumber(job[4]), tonumber(job[5])
  if done + failed < total then return false end
  local final = 'succeeded'
  if done == 0 then final = 'failed'
  elseif failed > 0 or job[6] then final = 'partially_succeeded' end
  if status == 'queued' then set_status('running', now) end
  return set_status(final, now)
end
"""

# ARGV: now ttl index outcome error_json
_LUA_FINISH_ITEM = _LUA_COMMON + """
local index, outcome = ARGV[3], ARGV[4]
if redis.call('HEXISTS', KEYS[2], index) == 0 then return {0, 0} end
if redis.call('HEXISTS', KEYS[3], index) == 1 then return {0, 0} end
redis.call('HSET', KEYS[3], index, outcome)
redis.call('HINCRBY', KEYS[1], outcome, 1)
if outcome == 'failed' then redis.call('HSET', KEYS[4], index, ARGV[5]) end
for i = 3, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('EXPIREAT', KEYS[i], math.ceil(tonumber(redis.call('HGET', KEYS[1], 'expires_at'))))
  end
end
if maybe_finish(ARGV[1]) then return {1, 1} end
return {1, 0}
"""

# ARGV: now ttl n, then per item: index item_json error_json ('' when none)
_LUA_ADD_ITEMS = _LUA_COMMON + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local expires_at = math.ceil(tonumber(redis.call('HGET', KEYS[1], 'expires_at')))
local added = 0
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local index, item, err = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  if redis.call('HSETNX', KEYS[2], index, item) == 1 then
    added = added + 1
    if err ~= '' then
      redis.call('HSET', KEYS[3], index, 'failed')
      redis.call('HSET', KEYS[4], index, err)
      redis.call('HINCRBY', KEYS[1], 'failed', 1)
    end
  end
end
redis.call('HINCRBY', KEYS[1], 'total', added)
for i = 2, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIREAT', KEYS[i], expires_at) end
end
return added
"""

# ARGV: now ttl error_code error_message ('' when the archive was read to its end)
_LUA_END_EXPANSION = _LUA_COMMON + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'expanded') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'expanded', '1')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error_code', ARGV[3], 'error_message', ARGV[4]) end
if maybe_finish(ARGV[1]) then return 1 end
return 0
"""

# ARGV: now ttl new_status error_code error_message   -> {changed, previous status}
_LUA_SET_STATUS = _LUA_COMMON + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
if not set_status(ARGV[3], ARGV[1]) then return {0, current} end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error_code', ARGV[4], 'error_message', ARGV[5]) end
return {1, current}
"""

# KEYS: upload   ARGV: job_id   -> 1 claimed, 0 not complete, -1 missing, -2 already used
_LUA_CLAIM_UPLOAD = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'used' then return -2 end
if state ~= 'complete' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'used', 'job_id', ARGV[1])
return 1
"""

# KEYS: a zset of deadlines (purge, active)   ARGV: now lease_s limit
#   -> members due, each leased for lease_s seconds
_LUA_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""


# --- store --------------------------------------------------------------------------------


class JobStore:
    """Job, item and upload records of one Redis database."""

    def __init__(self, redis: Redis, settings: Settings, clock: Callable[[], float] = time.time,
                 namespace: str = KEY_PREFIX, listeners: Sequence[JobListener] = ()) -> None:
        self.redis = redis
        self.listeners = tuple(listeners)
        self.settings = settings
        self._clock = clock
        self._ns = namespace
        self.purge_key = f"{namespace}:purge"
        self.workers_key = f"{namespace}:workers"
        # Unfinished jobs, each scored with the time it counts as stalled unless it moves before.
        self.active_key = f"{namespace}:active"
        self._finish_item = redis.register_script(_LUA_FINISH_ITEM)
        self._add_items = redis.register_script(_LUA_ADD_ITEMS)
        self._end_expansion = redis.register_script(_LUA_END_EXPANSION)
        self._set_status = redis.register_script(_LUA_SET_STATUS)
        self._claim_upload = redis.register_script(_LUA_CLAIM_UPLOAD)
        self._lease_due = redis.register_script(_LUA_LEASE_DUE)

    # keys

    def job_key(self, job_id: str) -> str:
        return f"{self._ns}:job:{{{job_id}}}"

    def _job_keys(self, job_id: str) -> list[str]:
        base = self.job_key(job_id)
        return [base, f"{base}:items", f"{base}:status", f"{base}:errors", f"{base}:attempts", self.purge_key]

    def upload_record_key(self, upload_id: str) -> str:
        return f"{self._ns}:upload:{{{upload_id}}}"

    def _ttl_args(self) -> list[Any]:
        return [repr(self._clock()), self.settings.result_ttl_s]

    # jobs

    def create_job(
        self,
        *,
        tenant: str,
        model: str,
        temperature: float | None,
        source_kind: str,
        source_key: str,
        source_filename: str | None = None,
        job_id: str | None = None,
        single_item: NewItem | None = None,
        callback_url: str | None = None,
        webhook_events: Sequence[str] = (),
    ) -> Job:
        """Record a queued job. ``single_item``: a one-image job, registered and expanded at once."""
        if ":" in tenant:
            raise ValueError("tenant names may not contain ':'")
        job_id = job_id or new_id()
        now = self._clock()
        expires_at = now + self.settings.result_ttl_s
        fields = {
            "id": job_id,
            "tenant": tenant,
            "status": QUEUED,
            "model": model,
            "temperature": "" if temperature is None else repr(float(temperature)),
            "source_filename": source_filename or "",
            "source_kind": source_kind,
            "source_key": source_key,
            "total": 0,
            "done": 0,
            "failed": 0,
            "expanded": "0",
            "created_at": repr(now),
            "expires_at": repr(expires_at),
            "callback_url": callback_url or "",
            "webhook_events": ",".join(webhook_events),
        }
        keys = self._job_keys(job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys[0], mapping=fields)
        pipe.expireat(keys[0], int(expires_at) + 1)
        pipe.zadd(self.purge_key, {f"job:{tenant}:{job_id}": expires_at})
        pipe.zadd(self.active_key, {job_id: now + self.settings.stall_after_s})
        pipe.execute()
        if single_item is not None:
            self.add_items(job_id, [single_item])
            self.end_expansion(job_id)
        return self.get(job_id)

    def find(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self.job_key(job_id))
        return _job_from_hash(raw) if raw else None

    def get(self, job_id: str, tenant: str | None = None) -> Job:
        """The job, or NotFound (also when it belongs to another tenant)."""
        job = self.find(job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return job

    def status(self, job_id: str) -> str | None:
        value = self.redis.hget(self.job_key(job_id), "status")
        return value.decode() if value is not None else None

    def mark_running(self, job_id: str) -> bool:
        """queued -> running; False when the job was not queued (already running, or terminal).
        Every call counts as the job moving: its tasks call it as they start."""
        self._touch(job_id)
        changed, _ = self._run_set_status(job_id, RUNNING, None)
        if changed:
            self._notify("job_started", job_id)
        return changed

    def fail_job(self, job_id: str, error: ColorizeError) -> bool:
        """End a job as failed with a job-level error; False when it had already ended."""
        changed, _ = self._run_set_status(job_id, FAILED, error)
        if changed:
            self._ended(job_id)
        return changed

    def cancel(self, job_id: str) -> Job:
        """Cancel a job not yet finished; Conflict when it had already ended."""
        changed, previous = self._run_set_status(job_id, CANCELED, None)
        if not changed:
            raise Conflict(f"job {job_id} has already ended ({previous})", status=previous)
        self._ended(job_id)
        return self.get(job_id)

    def _run_set_status(self, job_id: str, new: str, error: ColorizeError | None) -> tuple[bool, str]:
        code, message = (error.code, error.message) if error else ("", "")
        changed, previous = self._set_status(keys=self._job_keys(job_id), args=[*self._ttl_args(), new, code, message])
        if changed == -1:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return bool(changed), previous.decode() if isinstance(previous, bytes) else previous

    # items

    def add_items(self, job_id: str, items: Sequence[NewItem]) -> int:
        """Register items (idempotent per index); returns how many were new."""
        if not items:
            return 0
        args: list[Any] = [*self._ttl_args(), len(items)]
        for item in items:
            record = {"path": item.path, "output_path": item.output_path, "size": item.size}
            error = _error_json(item.error) if item.error is not None else ""
            args += [item.index, json.dumps(record, separators=(",", ":")), error]
        added = self._add_items(keys=self._job_keys(job_id), args=args)
        if added == -1:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        self._touch(job_id)
        return int(added)

    def end_expansion(self, job_id: str, error: ColorizeError | None = None) -> bool:
        """Mark the item list complete (``error``: why expansion stopped early); True if this finished the job."""
        code, message = (error.code, error.message) if error else ("", "")
        result = self._end_expansion(keys=self._job_keys(job_id), args=[*self._ttl_args(), code, message])
        if result == -1:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        if result == 1:
            self._ended(job_id)
        return result == 1

    def complete_item(self, job_id: str, index: int) -> ItemOutcome:
        return self._finish(job_id, index, ITEM_DONE, None)

    def fail_item(self, job_id: str, index: int, error: ItemError) -> ItemOutcome:
        return self._finish(job_id, index, ITEM_FAILED, error)

    def _finish(self, job_id: str, index: int, outcome: str, error: ColorizeError | None) -> ItemOutcome:
        error_json = _error_json(error) if error is not None else ""
        counted, finished = self._finish_item(
            keys=self._job_keys(job_id), args=[*self._ttl_args(), index, outcome, error_json]
        )
        if counted:
            self._touch(job_id)
            self._notify("item_finished", job_id, index, outcome, error.code if error is not None else None)
        if finished:
            self._ended(job_id)
        return ItemOutcome(counted=bool(counted), finished=bool(finished))

    def _ended(self, job_id: str) -> None:
        self.redis.zrem(self.active_key, job_id)
        self._notify("job_finished", job_id)

    def _notify(self, event: str, *args: Any) -> None:
        # The change is committed; a listener failing (a lost webhook) must not undo nor repeat it.
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("job listener %s failed on %s", type(listener).__name__, event)

    def record_attempt(self, job_id: str, index: int) -> int:
        """Count one more processing attempt of an item; returns the count including this one."""
        key = self._job_keys(job_id)[4]
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, str(index), 1)
        pipe.hget(self.job_key(job_id), "expires_at")
        attempts, expires_at = pipe.execute()
        if expires_at is not None:
            self.redis.expireat(key, int(float(expires_at)) + 1)
        return int(attempts)

    def forgive_attempts(self, job_id: str, indices: Iterable[int]) -> None:
        """Take back one attempt of each item, ended by a failure the worker caught and survived
        (storage or Redis away): attempts count crashes and time-outs of the item, not outages.
        All or none, so a caller may repeat it after a connection error."""
        pipe = self.redis.pipeline(transaction=True)
        for index in indices:
            pipe.hincrby(self._job_keys(job_id)[4], str(index), -1)
        pipe.execute()

    def attempts(self, job_id: str, indices: Iterable[int]) -> list[int]:
        """Processing attempts started so far for each of ``indices``."""
        indices = [str(i) for i in indices]
        if not indices:
            return []
        return [int(v or 0) for v in self.redis.hmget(self._job_keys(job_id)[4], indices)]

    def unfinished(self, job_id: str, indices: Iterable[int]) -> list[int]:
        """Those of ``indices`` that are registered and neither done nor failed."""
        indices = list(indices)
        if not indices:
            return []
        keys = self._job_keys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys[1], [str(i) for i in indices])
        pipe.hmget(keys[2], [str(i) for i in indices])
        records, statuses = pipe.execute()
        return [i for i, record, status in zip(indices, records, statuses) if record is not None and status is None]

    def items(self, job_id: str, offset: int, limit: int) -> list[Item]:
        """Items ``offset`` .. ``offset + limit - 1`` in index order (those registered so far)."""
        indices = [str(i) for i in range(offset, offset + limit)]
        if not indices:
            return []
        keys = self._job_keys(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys[0], "status")
        pipe.hmget(keys[1], indices)
        pipe.hmget(keys[2], indices)
        pipe.hmget(keys[3], indices)
        job_status, records, statuses, errors = pipe.execute()
        canceled = job_status == CANCELED.encode()
        result = []
        for index, record, status, error in zip(indices, records, statuses, errors):
            if record is None:
                break
            result.append(_item(int(index), record, status, error, canceled))
        return result

    def item(self, job_id: str, index: int) -> Item:
        found = self.items(job_id, index, 1) if index >= 0 else []
        if not found:
            raise NotFound(f"job {job_id} has no item {index}", job_id=job_id, index=index)
        return found[0]

    def done_items(self, job_id: str, batch: int = 1000) -> Iterable[Item]:
        """Every done item in index order, read ``batch`` at a time."""
        total = int(self.redis.hget(self.job_key(job_id), "total") or 0)
        for start in range(0, total, batch):
            for item in self.items(job_id, start, batch):
                if item.status == ITEM_DONE:
                    yield item

    # uploads

    def create_upload(self, *, tenant: str, filename: str | None, size: int, key: str, multipart_id: str | None,
                      upload_id: str | None = None) -> Upload:
        upload_id = upload_id or new_id()
        now = self._clock()
        expires_at = now + self.settings.result_ttl_s
        fields = {
            "id": upload_id, "tenant": tenant, "filename": filename or "", "size": size, "key": key,
            "multipart_id": multipart_id or "", "state": UPLOAD_PENDING, "job_id": "",
            "created_at": repr(now), "expires_at": repr(expires_at),
        }
        record_key = self.upload_record_key(upload_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record_key, mapping=fields)
        pipe.expireat(record_key, int(expires_at) + 1)
        pipe.zadd(self.purge_key, {f"upload:{tenant}:{upload_id}:{multipart_id or ''}": expires_at})
        pipe.execute()
        return self.get_upload(upload_id)

    def get_upload(self, upload_id: str, tenant: str | None = None) -> Upload:
        raw = self.redis.hgetall(self.upload_record_key(upload_id))
        if not raw or (tenant is not None and raw[b"tenant"].decode() != tenant):
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        text = {k.decode(): v.decode() for k, v in raw.items()}
        return Upload(
            id=text["id"], tenant=text["tenant"], filename=text["filename"] or None, size=int(text["size"]),
            key=text["key"], multipart_id=text["multipart_id"] or None, state=text["state"],
            job_id=text["job_id"] or None, created_at=float(text["created_at"]),
            expires_at=float(text["expires_at"]),
        )

    def mark_upload_complete(self, upload_id: str) -> None:
        """pending -> complete (idempotent); Conflict once a job has used it."""
        key = self.upload_record_key(upload_id)
        state = self.redis.hget(key, "state")
        if state is None:
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        if state.decode() == UPLOAD_USED:
            raise Conflict(f"upload {upload_id} has already been used by a job")
        self.redis.hset(key, "state", UPLOAD_COMPLETE)

    def claim_upload(self, upload_id: str, job_id: str) -> None:
        """Bind a complete upload to one job; Conflict when incomplete or already used."""
        result = self._claim_upload(keys=[self.upload_record_key(upload_id)], args=[job_id])
        if result == -1:
            raise NotFound(f"no upload with id {upload_id!r}", upload_id=upload_id)
        if result == -2:
            raise Conflict(f"upload {upload_id} has already been used by a job", upload_id=upload_id)
        if result == 0:
            raise Conflict(f"upload {upload_id} is not complete", upload_id=upload_id)

    def release_upload(self, upload_id: str) -> None:
        """Undo a claim whose job could not be created."""
        self.redis.hset(self.upload_record_key(upload_id), mapping={"state": UPLOAD_COMPLETE, "job_id": ""})

    def extend_upload_expiry(self, upload: Upload, expires_at: float) -> None:
        """Keep an upload's object until its job's own expiry (its expander may still read it)."""
        member = f"upload:{upload.tenant}:{upload.id}:{upload.multipart_id or ''}"
        self.redis.zadd(self.purge_key, {member: expires_at}, gt=True)

    # expiry

    def lease_due_purges(self, limit: int = 100, lease_s: int = 300) -> list[PurgeTarget]:
        """Storage owners whose time is up, each leased to this caller for ``lease_s`` seconds."""
        members = self._lease_due(keys=[self.purge_key], args=[repr(self._clock()), lease_s, limit])
        return [PurgeTarget.parse(m.decode()) for m in members]

    def forget_purge(self, target: "PurgeTarget") -> None:
        self.redis.zrem(self.purge_key, target.member)

    # stalled jobs

    def _touch(self, job_id: str) -> None:
        # XX: a job that has ended (and left the set) is not brought back by a late task.
        self.redis.zadd(self.active_key, {job_id: self._clock() + self.settings.stall_after_s}, xx=True)

    def lease_stalled(self, limit: int = 100) -> list[str]:
        """Unfinished jobs that have not moved for ``settings.stall_after_s``, each leased to the
        caller for as long again (other callers do not get it meanwhile)."""
        args = [repr(self._clock()), self.settings.stall_after_s, limit]
        members = self._lease_due(keys=[self.active_key], args=args)
        return [m.decode() for m in members]

    def forget_active(self, job_id: str) -> None:
        """Drop a job from the stalled-job watch (it has ended or expired)."""
        self.redis.zrem(self.active_key, job_id)

    # workers

    def record_heartbeat(self, worker: str, stale_after_s: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.workers_key, {worker: self._clock()})
        pipe.zremrangebyscore(self.workers_key, "-inf", self._clock() - stale_after_s)
        pipe.expire(self.workers_key, int(stale_after_s) + 1)
        pipe.execute()

    def forget_worker(self, worker: str) -> None:
        self.redis.zrem(self.workers_key, worker)

    def live_workers(self, stale_after_s: float) -> list[str]:
        members = self.redis.zrangebyscore(self.workers_key, self._clock() - stale_after_s, "+inf")
        return [m.decode() for m in members]


@dataclass(frozen=True)
class PurgeTarget:
    kind: str  # "job" | "upload"
    tenant: str
    id: str
    multipart_id: str | None
    member: str

    @classmethod
    def parse(cls, member: str) -> "PurgeTarget":
        kind, tenant, rest = member.split(":", 2)
        if kind == "upload":
            object_id, _, multipart_id = rest.partition(":")
            return cls(kind, tenant, object_id, multipart_id or None, member)
        return cls(kind, tenant, rest, None, member)


# --- decoding -----------------------------------------------------------------------------


def _error_json(error: ColorizeError) -> str:
    return json.dumps({"code": error.code, "message": error.message}, separators=(",", ":"))


def _optional_float(value: str) -> float | None:
    return float(value) if value else None


def _job_from_hash(raw: dict[bytes, bytes]) -> Job:
    text = {k.decode(): v.decode() for k, v in raw.items()}
    error = None
    if text.get("error_code"):
        error = {"code": text["error_code"], "message": text.get("error_message", "")}
    return Job(
        id=text["id"],
        tenant=text["tenant"],
        status=text["status"],
        model=text["model"],
        temperature=_optional_float(text.get("temperature", "")),
        source_filename=text.get("source_filename") or None,
        source_kind=text["source_kind"],
        source_key=text["source_key"],
        total=int(text.get("total", 0)),
        done=int(text.get("done", 0)),
        failed=int(text.get("failed", 0)),
        expanded=text.get("expanded") == "1",
        created_at=float(text["created_at"]),
        started_at=_optional_float(text.get("started_at", "")),
        finished_at=_optional_float(text.get("finished_at", "")),
        expires_at=float(text["expires_at"]),
        error=error,
        callback_url=text.get("callback_url") or None,
        webhook_events=tuple(filter(None, text.get("webhook_events", "").split(","))),
    )


def _item(index: int, record: bytes, status: bytes | None, error: bytes | None, canceled: bool) -> Item:
    data = json.loads(record)
    if status is not None:
        state = status.decode()
    else:
        state = ITEM_CANCELED if canceled else ITEM_PENDING
    return Item(
        index=index,
        path=data["path"],
        output_path=data["output_path"],
        size=data.get("size"),
        status=state,
        error=json.loads(error) if error else None,
    )
