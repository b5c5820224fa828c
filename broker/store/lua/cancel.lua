#!lua flags=allow-oom
--[[ cancel: a requester cancels a waiting, scheduled, pending or running job; what waited on
it fails (lib/deps.lua).

Invariant: a cancelled job is in no queue, no worker's running set, no scheduled, deadline or
retry set;
the worker that held it keeps its name on the job, so its next write learns it was cancelled.

It runs when Redis is full (flags=allow-oom): cancelling ends work and stops it growing.

KEYS[1] job hash
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[4..] field, value pairs the requester echoed back and may not change

Returns {"ok"} | {"not_found"} | {"illegal", status} | {"locked", field, status}
]]
-- @include fields
-- @include status
-- @include deps
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'runtime', 'worker_id')
local status = j[1]
if not status then
  return {'not_found'}
end
local changed = first_changed(job, ARGV, 4)
if changed then
  return {'locked', changed, status}
end
if status == 'cancelled' then
  return {'ok'}
end
local p = cjson.decode(ARGV[3])
p.now = ARGV[2]
if status == 'pending' then
  redis.call('ZREM', p.queue .. j[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', job, 'retry_at')
elseif status == 'scheduled' then
  redis.call('ZREM', p.scheduled, ARGV[1])
elseif status == 'waiting' then
  stop_waiting(job, ARGV[1], p)
elseif status == 'running' then
  redis.call('SREM', p.worker .. j[3] .. p.jobs_suffix, ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  return {'illegal', status}
end
set_status(job, ARGV[1], status, 'cancelled', p)
redis.call('HSET', job, 'finished_at', ARGV[2], 'updated_at', ARGV[2])
job_ended(ARGV[1], redis.call('HGET', job, 'data2_id'), 'cancelled', ARGV[2], p)
return {'ok'}
