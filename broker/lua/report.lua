#!lua
--[[ report: the worker holding a running job reports on it: a heartbeat, its output id, its
outcome, or a failure to retry later.

Invariant: only the holder (same worker id and, when given, the current lease) changes the job;
a job leaves `running` once, and repeating the same final report changes nothing. Any report
from a known worker counts as hearing from it. A failure reported with retry waits out an
exponential backoff in the delayed set while attempts remain, and fails for good after.

KEYS[1] job hash
KEYS[2] reporting worker's set of running job ids
KEYS[3] data hash named by ARGV[5] (ignored when ARGV[5] is "")
KEYS[4] workers by the time they will be declared dead (sorted set)
KEYS[5] running jobs by time-limit deadline (sorted set)
KEYS[6] delayed retries by due time (sorted set)
KEYS[7] reporting worker's hash
ARGV[1] job_id
ARGV[2] worker_id of the reporter
ARGV[3] lease, or "" to judge by the worker id alone
ARGV[4] status: running | succeeded | failed
ARGV[5] data2_id to record as the job's output, or ""
ARGV[6] error text kept on a failed job, or ""
ARGV[7] now, ms since the epoch
ARGV[8] the reporter's new deadline, ms
ARGV[9] "1" to retry a failure later while attempts remain, else ""
ARGV[10] first retry backoff, ms (doubles per attempt)
ARGV[11] longest retry backoff, ms
ARGV[12] jitter: a random fraction in [0, 1)
ARGV[13] key prefixes and index keys, JSON (keys.py: Keys.prefixes)
ARGV[14..] field, value pairs the worker echoed back and may not change

Returns {"ok", started_at} | {"not_found"} | {"lease_lost"} | {"cancelled"} | {"illegal", status}
      | {"locked", field, status} | {"unknown_data", "data2_id"}
]]
-- @include fields
-- @include holder
-- @include status
local job, now = KEYS[1], ARGV[7]
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('HSET', KEYS[7], 'last_seen', now)
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[2])
end
local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease', 'data2_id', 'attempts',
  'max_attempts', 'started_at')
local status = j[1]
local refused = refused_writer(j, ARGV[2], ARGV[3])
if refused then
  return refused
end
if status ~= 'running' then
  if status == ARGV[4] then
    return {'ok'}
  end
  return {'illegal', status}
end
local changed = first_changed(job, 14)
if changed then
  return {'locked', changed, status}
end
local output = ARGV[5]
if output ~= '' and output ~= j[4] then
  if j[4] ~= '' then
    return {'locked', 'data2_id', status}
  end
  if redis.call('EXISTS', KEYS[3]) == 0 then
    return {'unknown_data', 'data2_id'}
  end
  redis.call('HSET', job, 'data2_id', output)
end
redis.call('HSET', job, 'updated_at', now)
if ARGV[4] == 'running' then
  return {'ok', ''}
end
local p = cjson.decode(ARGV[13])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if ARGV[4] == 'failed' and ARGV[6] ~= '' then
  redis.call('HSET', job, 'error', ARGV[6])
end
local attempts = tonumber(j[5])
if ARGV[4] == 'failed' and ARGV[9] == '1' and attempts < tonumber(j[6] or 1) then
  local backoff = math.min(tonumber(ARGV[11]), tonumber(ARGV[10]) * 2 ^ (attempts - 1))
  local due = tonumber(now) + math.floor(backoff * (0.5 + 0.5 * tonumber(ARGV[12])))
  set_status(job, ARGV[1], 'running', 'pending', p)
  redis.call('HSET', job, 'retry_at', due)
  redis.call('HDEL', job, 'worker_id', 'lease', 'started_at')
  redis.call('ZADD', KEYS[6], due, ARGV[1])
  return {'ok', j[7]}
end
set_status(job, ARGV[1], 'running', ARGV[4], p)
redis.call('HSET', job, 'finished_at', now)
return {'ok', j[7]}
