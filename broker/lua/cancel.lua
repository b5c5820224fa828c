#!lua
--[[ cancel: a requester cancels a pending or running job.

Invariant: a cancelled job is in no queue, no worker's running set, no deadline or retry set; the worker that held
it keeps its name on the job, so its next write learns the job was cancelled.

KEYS[1] job hash
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] queue key prefix
ARGV[4] worker key prefix
ARGV[5] suffix of a worker's running-job set (worker prefix .. worker_id .. suffix)
ARGV[6..] field, value pairs the requester echoed back and may not change

Returns {"ok"} | {"not_found"} | {"illegal", status} | {"locked", field, status}
]]
-- @include fields
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'runtime', 'worker_id')
local status = j[1]
if not status then
  return {'not_found'}
end
local changed = first_changed(job, 6)
if changed then
  return {'locked', changed, status}
end
if status == 'cancelled' then
  return {'ok'}
end
if status == 'pending' then
  redis.call('ZREM', ARGV[3] .. j[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', job, 'retry_at')
elseif status == 'running' then
  redis.call('SREM', ARGV[4] .. j[3] .. ARGV[5], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  return {'illegal', status}
end
redis.call('HSET', job, 'status', 'cancelled', 'finished_at', ARGV[2], 'updated_at', ARGV[2])
return {'ok'}
