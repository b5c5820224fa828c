#!lua
--[[ delete_job: a requester deletes a job.

Invariant: a deleted job is in no queue, running set, deadline or retry set. A running job cannot vanish under
its worker: it is cancelled instead and kept readable for a while (a tombstone), so that the
worker's next write learns it was cancelled; then Redis expires it.

KEYS[1] job hash
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] queue key prefix
ARGV[4] worker key prefix
ARGV[5] suffix of a worker's running-job set
ARGV[6] seconds a cancelled running job stays as a tombstone

Returns {"ok", "deleted" | "cancelled"} | {"not_found"}
]]
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'runtime', 'worker_id')
local status = j[1]
if not status then
  return {'not_found'}
end
if status == 'running' then
  redis.call('SREM', ARGV[4] .. j[3] .. ARGV[5], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', ARGV[2], 'updated_at', ARGV[2])
  redis.call('EXPIRE', job, ARGV[6])
  return {'ok', 'cancelled'}
end
if status == 'pending' then
  redis.call('ZREM', ARGV[3] .. j[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('DEL', job)
return {'ok', 'deleted'}
