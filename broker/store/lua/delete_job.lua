#!lua flags=allow-oom
--[[ delete_job: a requester deletes a job.

Invariant: a deleted job is in no queue, running, scheduled, deadline or retry set, no listing
and no retention set; the idempotency record that answered it goes with it.
A running job cannot vanish under its worker: it is cancelled instead and kept readable for a
while (a tombstone), so that the worker's next write learns it was cancelled; the sweep
deletes it when its time is up.

It runs when Redis is full (flags=allow-oom): deleting frees memory.

KEYS[1] job hash
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
KEYS[4] tombstones by the time they go (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[4] ms a cancelled running job stays as a tombstone

Returns {"ok", "deleted" | "cancelled"} | {"not_found"}
]]
-- @include status
-- @include forget
-- @include deps
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'runtime', 'worker_id')
local status = j[1]
if not status then
  return {'not_found'}
end
local p = cjson.decode(ARGV[3])
p.now = ARGV[2]
local data2_id = redis.call('HGET', job, 'data2_id')
if status == 'running' then
  redis.call('SREM', p.worker .. j[3] .. p.jobs_suffix, ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  set_status(job, ARGV[1], status, 'cancelled', p)
  redis.call('HSET', job, 'finished_at', ARGV[2], 'updated_at', ARGV[2])
  redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + tonumber(ARGV[4]), ARGV[1])
  job_ended(ARGV[1], data2_id, 'cancelled', ARGV[2], p)
  return {'ok', 'cancelled'}
end
if status == 'pending' then
  redis.call('ZREM', p.queue .. j[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif status == 'scheduled' then
  redis.call('ZREM', p.scheduled, ARGV[1])
elseif status == 'waiting' then
  stop_waiting(job, ARGV[1], p)
end
p.tombstones = KEYS[4]
forget_job(job, ARGV[1], status, p)
if status ~= 'succeeded' then
  job_ended(ARGV[1], data2_id, 'deleted', ARGV[2], p)
end
return {'ok', 'deleted'}
