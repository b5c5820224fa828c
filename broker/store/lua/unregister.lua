#!lua flags=allow-oom
--[[ unregister: a worker leaves. The jobs it still runs go back to the head of their queues
(or fail, error max_attempts, once they have started max_attempts runs).

Invariant: no job stays bound to a worker that no longer exists.

It runs when Redis is full (flags=allow-oom): a worker leaving frees its record and gives its
jobs back.

KEYS[1] worker hash
KEYS[2] worker's set of running job ids
KEYS[3] workers by the time they will be declared dead (sorted set)
KEYS[4] running jobs by time-limit deadline (sorted set)
ARGV[1] worker_id
ARGV[2] now, ms since the epoch
ARGV[3] key prefixes, index keys and settings, JSON (keys.py: Keys.context)

Returns {"ok", requeued_count} | {"unknown_worker"}
]]
-- @include status
-- @include wake
-- @include giveback
-- @include settle
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_worker'}
end
local p = cjson.decode(ARGV[3])
p.now = ARGV[2]
p.deadlines = KEYS[4]
local requeued = 0
for _, job_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local job = p.job .. job_id
  local j = redis.call('HMGET', job, 'status', 'worker_id')
  if j[1] == 'running' and j[2] == ARGV[1] then
    give_back(job, job_id, ARGV[2], 'max_attempts', p, 'worker_left')
    requeued = requeued + 1
  end
end
leave(ARGV[1], redis.call('HGET', KEYS[1], 'Runtime'), p)
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok', requeued}
