#!lua
--[[ unregister: a worker leaves. The jobs it still runs go back to the head of their queues.

Invariant: no job stays bound to a worker that no longer exists.

KEYS[1] worker hash
KEYS[2] worker's set of running job ids
KEYS[3] workers by last-seen time (sorted set)
ARGV[1] worker_id
ARGV[2] now, ms since the epoch
ARGV[3] job key prefix
ARGV[4] queue key prefix
ARGV[5] wake channel prefix

Returns {"ok", requeued_count} | {"unknown_worker"}
]]
-- @include requeue
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_worker'}
end
local requeued = 0
for _, job_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local job = ARGV[3] .. job_id
  local j = redis.call('HMGET', job, 'status', 'worker_id')
  if j[1] == 'running' and j[2] == ARGV[1] then
    requeue_at_head(job, job_id, ARGV[2], ARGV[4], ARGV[5])
    requeued = requeued + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok', requeued}
