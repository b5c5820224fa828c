#!lua
--[[ claim: hand the oldest pending job among a worker's runtimes to that worker.

Invariant: a job leaves its queue and becomes running, bound to exactly one worker and lease,
in one step; two claims can never return the same job. The worker counts as heard from.

KEYS[1] worker hash
KEYS[2] worker's set of running job ids
KEYS[3] workers by last-seen time (sorted set)
ARGV[1] worker_id
ARGV[2] now, ms since the epoch
ARGV[3] lease: a fresh random token for this contract
ARGV[4] queue key prefix (a runtime's queue is prefix .. runtime)
ARGV[5] job key prefix (a job's hash is prefix .. job_id)
ARGV[6] data key prefix (the hash of the job's data2_id learns its writer: job, worker, lease)

Returns {"unknown_worker"}
      | {"empty", runtimes_json}
      | {"ok", runtimes_json, more, job_id, data1_id, data2_id, function_id, runtime, attempts}
        where more is 1 when a queue of this worker still holds a job
]]
local runtimes_json = redis.call('HGET', KEYS[1], 'Runtime')
if not runtimes_json then
  return {'unknown_worker'}
end
local now = ARGV[2]
redis.call('HSET', KEYS[1], 'last_seen', now)
redis.call('ZADD', KEYS[3], now, ARGV[1])

local runtimes = cjson.decode(runtimes_json)
local best_queue, best_id, best_score
for _, runtime in ipairs(runtimes) do
  local queue = ARGV[4] .. runtime
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
    best_queue, best_id, best_score = queue, head[1], tonumber(head[2])
  end
end
if not best_id then
  return {'empty', runtimes_json}
end

redis.call('ZREM', best_queue, best_id)
local job = ARGV[5] .. best_id
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'status', 'running', 'worker_id', ARGV[1], 'lease', ARGV[3],
  'started_at', now, 'updated_at', now)
redis.call('SADD', KEYS[2], best_id)

local more = 0
for _, runtime in ipairs(runtimes) do
  if redis.call('ZCARD', ARGV[4] .. runtime) > 0 then
    more = 1
    break
  end
end
local f = redis.call('HMGET', job, 'data1_id', 'data2_id', 'function_id', 'runtime')
if f[2] ~= '' and redis.call('EXISTS', ARGV[6] .. f[2]) == 1 then
  redis.call('HSET', ARGV[6] .. f[2], 'job_id', best_id, 'worker_id', ARGV[1], 'lease', ARGV[3])
end
return {'ok', runtimes_json, more, best_id, f[1], f[2], f[3], f[4], attempts}
