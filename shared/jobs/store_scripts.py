"""The Lua scripts behind :class:`shared.jobs.store.JobStore`.

Every change that reads and then writes (an item finishing, a job finishing, a cancel, a
batch of attempts) runs as one script, so concurrent workers, redelivered tasks and the API
never double-count an item nor finish a job twice, and a chunk pays one round trip per step
whatever its number of items.

Each script gets the keys of :data:`KEY_NAMES` as locals (``job_key``, ``items_key``, ...)
and starts its ``ARGV`` with ``now``, the result TTL, the stall time and the job id; its own
arguments follow from ``ARGV[5]``.
"""

from __future__ import annotations

from shared.jobs.records import TERMINAL_STATUSES, TRANSITIONS, ItemStatus, JobStatus
from shared.redis_keys import LUA_JOB_PURGE_MEMBER, RedisKeys

KEY_NAMES = (
    "job_key",
    "items_key",
    "statuses_key",
    "errors_key",
    "attempts_key",
    "inputs_key",
    "objects_key",
    "purge_key",
    "active_key",
)


def script_keys(keys: RedisKeys, job_id: str) -> dict[str, str]:
    """The keys of :data:`KEY_NAMES` for one job."""
    job = keys.job(job_id)
    return {
        "job_key": job.record,
        "items_key": job.items,
        "statuses_key": job.statuses,
        "errors_key": job.errors,
        "attempts_key": job.attempts,
        "inputs_key": job.inputs,
        "objects_key": job.input_objects,
        "purge_key": keys.purge,
        "active_key": keys.active,
    }


def _lua_table(rows: dict[str, str]) -> str:
    return "{" + ", ".join(f"['{key}'] = {value}" for key, value in rows.items()) + "}"


_ALLOWED = _lua_table(
    {status: _lua_table({target: "true" for target in sorted(targets)}) for status, targets in TRANSITIONS.items()}
)
_TERMINAL = _lua_table({status: "true" for status in sorted(TERMINAL_STATUSES)})

_COMMON = f"""
local now, ttl, stall_after, job_id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local allowed = {_ALLOWED}
local terminal = {_TERMINAL}

-- An item key just written expires with the job.
local function keep_with_job(key)
  local expires_at = redis.call('HGET', job_key, 'expires_at')
  if expires_at and redis.call('EXISTS', key) == 1 then
    redis.call('EXPIREAT', key, math.ceil(tonumber(expires_at)))
  end
end

local function renew_expiry(expires_at)
  redis.call('HSET', job_key, 'expires_at', expires_at)
  for _, key in ipairs({{job_key, items_key, statuses_key, errors_key, attempts_key, inputs_key, objects_key}}) do
    if redis.call('EXISTS', key) == 1 then redis.call('EXPIREAT', key, math.ceil(expires_at)) end
  end
  local tenant = redis.call('HGET', job_key, 'tenant')
  redis.call('ZADD', purge_key, expires_at, {LUA_JOB_PURGE_MEMBER})
end

-- The job moved: put off the time it counts as stalled (XX: an ended job is not brought back).
local function touch()
  redis.call('ZADD', active_key, 'XX', tonumber(now) + stall_after, job_id)
end

local function set_status(new)
  local current = redis.call('HGET', job_key, 'status')
  if not current or not allowed[current] or not allowed[current][new] then return false end
  redis.call('HSET', job_key, 'status', new)
  if new == '{JobStatus.RUNNING}' then redis.call('HSET', job_key, 'started_at', now) end
  if terminal[new] then
    redis.call('HSET', job_key, 'finished_at', now)
    renew_expiry(tonumber(now) + ttl)
    redis.call('ZREM', active_key, job_id)
  end
  return true
end

-- Finish the job if expansion is over and every item has ended; true only for the caller
-- whose call made that happen.
local function maybe_finish()
  local job = redis.call('HMGET', job_key, 'status', 'expanded', 'total', 'done', 'failed', 'error_code')
  local status, expanded = job[1], job[2]
  if status ~= '{JobStatus.RUNNING}' and status ~= '{JobStatus.QUEUED}' then return false end
  if expanded ~= '1' then return false end
  local total, done, failed = tonumber(job[3]), tonumber(job[4]), tonumber(job[5])
  if done + failed < total then return false end
  local final = '{JobStatus.SUCCEEDED}'
  if done == 0 then final = '{JobStatus.FAILED}'
  elseif failed > 0 or job[6] then final = '{JobStatus.PARTIALLY_SUCCEEDED}' end
  if status == '{JobStatus.QUEUED}' then set_status('{JobStatus.RUNNING}') end
  return set_status(final)
end

local function unfinished(index)
  return redis.call('HEXISTS', items_key, index) == 1 and redis.call('HEXISTS', statuses_key, index) == 0
end

-- Input objects whose items have all ended: the caller deletes them.
local emptied = {{}}

-- An ended item's bytes are no longer needed: its input record goes, and the input object
-- holding them counts one item fewer.
local function release_input(index)
  local input = redis.call('HGET', inputs_key, index)
  if not input then return end
  redis.call('HDEL', inputs_key, index)
  local object = string.match(input, '^([^;]+);')
  if object and redis.call('HINCRBY', objects_key, object, -1) <= 0 then
    redis.call('HDEL', objects_key, object)
    table.insert(emptied, object)
  end
end

-- An item's one and only outcome (done or failed, also the name of the job's count of such
-- items); false when it had one already or is unknown.
local function finish_item(index, outcome, error_json)
  if redis.call('HEXISTS', items_key, index) == 0 then return false end
  if redis.call('HSETNX', statuses_key, index, outcome) == 0 then return false end
  redis.call('HINCRBY', job_key, outcome, 1)
  if outcome == '{ItemStatus.FAILED}' then redis.call('HSET', errors_key, index, error_json) end
  release_input(index)
  return true
end

-- Count one more attempt of each unfinished item of ARGV[first..last]; an item past
-- max_attempts fails instead, with error_format (JSON with a %d for the attempts it used).
-- Returns the items begun, and index, attempts used for each that failed.
local function begin_items(first, last, max_attempts, error_format)
  local started, exhausted = {{}}, {{}}
  for i = first, last do
    local index = ARGV[i]
    if unfinished(index) then
      local attempts = redis.call('HINCRBY', attempts_key, index, 1)
      if attempts > max_attempts then
        finish_item(index, '{ItemStatus.FAILED}', string.format(error_format, attempts - 1))
        table.insert(exhausted, index)
        table.insert(exhausted, attempts - 1)
      else
        table.insert(started, index)
      end
    end
  end
  keep_with_job(attempts_key)
  return started, exhausted
end
"""

# -> {started 1|0, job fields}; nil when the job does not exist
MARK_RUNNING = (
    _COMMON
    + f"""
if redis.call('EXISTS', job_key) == 0 then return false end
touch()
local started = set_status('{JobStatus.RUNNING}') and 1 or 0
return {{started, redis.call('HGETALL', job_key)}}
"""
)

# ARGV[5]: how many fresh items to begin now; ARGV[6..]: the chunk's indices
#   -> {started 1|0, fresh, retried, job fields, inputs}; nil when the job does not exist.
#   inputs: index, input record for each fresh or retried item that has one
BEGIN_CHUNK = (
    _COMMON
    + f"""
if redis.call('EXISTS', job_key) == 0 then return false end
if terminal[redis.call('HGET', job_key, 'status')] then
  return {{0, {{}}, {{}}, redis.call('HGETALL', job_key), {{}}}}
end
touch()
local started = set_status('{JobStatus.RUNNING}') and 1 or 0
local fresh, retried = {{}}, {{}}
for i = 6, #ARGV do
  local index = ARGV[i]
  if unfinished(index) then
    if tonumber(redis.call('HGET', attempts_key, index) or '0') == 0 then
      table.insert(fresh, index)
    else
      table.insert(retried, index)
    end
  end
end
for i = 1, math.min(tonumber(ARGV[5]), #fresh) do redis.call('HINCRBY', attempts_key, fresh[i], 1) end
keep_with_job(attempts_key)
local inputs = {{}}
for _, list in ipairs({{fresh, retried}}) do
  for _, index in ipairs(list) do
    local input = redis.call('HGET', inputs_key, index)
    if input then
      table.insert(inputs, index)
      table.insert(inputs, input)
    end
  end
end
return {{started, fresh, retried, redis.call('HGETALL', job_key), inputs}}
"""
)

# ARGV[5]: max attempts   ARGV[6]: exhausted error format   ARGV[7]: n outcomes,
# then n x (index, 'done' | 'failed', error JSON or ''), then the indices to begin
#   -> {counted indices, started, exhausted, finished 1|0, job fields, emptied input objects}
RECORD = (
    _COMMON
    + """
local n = tonumber(ARGV[7])
local counted = {}
for i = 0, n - 1 do
  local index = ARGV[8 + 3 * i]
  if finish_item(index, ARGV[9 + 3 * i], ARGV[10 + 3 * i]) then table.insert(counted, index) end
end
local started, exhausted = {}, {}
local status = redis.call('HGET', job_key, 'status')
if status and not terminal[status] then
  started, exhausted = begin_items(8 + 3 * n, #ARGV, tonumber(ARGV[5]), ARGV[6])
end
keep_with_job(statuses_key)
keep_with_job(errors_key)
if status then touch() end
local finished = maybe_finish() and 1 or 0
return {counted, started, exhausted, finished, redis.call('HGETALL', job_key), emptied}
"""
)

# ARGV[5..]: indices whose last attempt is given back, if still unfinished
FORGIVE = (
    _COMMON
    + """
for i = 5, #ARGV do
  local index = ARGV[i]
  if unfinished(index) and tonumber(redis.call('HGET', attempts_key, index) or '0') > 0 then
    redis.call('HINCRBY', attempts_key, index, -1)
  end
end
return 0
"""
)

# ARGV[5]: n, then per item: index, item JSON, error JSON ('' when none), input record ('' when
# none)   -> items added; nil when no job
ADD_ITEMS = (
    _COMMON
    + f"""
if redis.call('EXISTS', job_key) == 0 then return false end
local added = 0
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local index, item, err, input = ARGV[6 + 4 * i], ARGV[7 + 4 * i], ARGV[8 + 4 * i], ARGV[9 + 4 * i]
  if redis.call('HSETNX', items_key, index, item) == 1 then
    added = added + 1
    if err ~= '' then
      redis.call('HSET', statuses_key, index, '{ItemStatus.FAILED}')
      redis.call('HSET', errors_key, index, err)
      redis.call('HINCRBY', job_key, '{ItemStatus.FAILED}', 1)
    elseif input ~= '' then
      redis.call('HSET', inputs_key, index, input)
      local object = string.match(input, '^([^;]+);')
      if object then redis.call('HINCRBY', objects_key, object, 1) end
    end
  end
end
redis.call('HINCRBY', job_key, 'total', added)
for _, key in ipairs({{items_key, statuses_key, errors_key, inputs_key, objects_key}}) do keep_with_job(key) end
touch()
return added
"""
)

# ARGV[5], ARGV[6]: error code and message ('' when the archive was read to its end)
#   -> {finished 1|0, job fields}; nil when no job
END_EXPANSION = (
    _COMMON
    + """
if redis.call('EXISTS', job_key) == 0 then return false end
if redis.call('HGET', job_key, 'expanded') == '1' then return {0, redis.call('HGETALL', job_key)} end
redis.call('HSET', job_key, 'expanded', '1')
if ARGV[5] ~= '' then redis.call('HSET', job_key, 'error_code', ARGV[5], 'error_message', ARGV[6]) end
local finished = maybe_finish() and 1 or 0
return {finished, redis.call('HGETALL', job_key)}
"""
)

# ARGV[5]: the new status   -> {changed 1|0, previous status, job fields}; nil when no job
SET_STATUS = (
    _COMMON
    + """
local current = redis.call('HGET', job_key, 'status')
if not current then return false end
local changed = set_status(ARGV[5]) and 1 or 0
return {changed, current, redis.call('HGETALL', job_key)}
"""
)
