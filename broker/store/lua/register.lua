#!lua
--[[ register: a worker announces the runtimes it can run.

Invariant: a worker id is written only where absent; every worker is in the liveness index,
in the listing of worker ids and in the worker set of each of its runtimes.
Replayed by redis-py after a lost reply, it recognises its own record (same registered_at).

KEYS[1] worker hash to create
KEYS[2] workers by the time they will be declared dead (sorted set)
ARGV[1] worker_id
ARGV[2] runtimes as a JSON list
ARGV[3] now, ms since the epoch
ARGV[4] the worker's deadline, ms
ARGV[5] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[6] how many runtimes the broker may know at once

Returns {"ok"} | {"id_taken"} | {"too_many_runtimes", limit}: a runtime is new and no room
]]
-- @include status
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'registered_at') == ARGV[3] then
    return {'ok'}
  end
  return {'id_taken'}
end
local p = cjson.decode(ARGV[5])
local runtimes = cjson.decode(ARGV[2])
if not runtimes_fit(runtimes, ARGV[6], p) then
  return {'too_many_runtimes', ARGV[6]}
end
redis.call('HSET', KEYS[1], 'worker_id', ARGV[1], 'Runtime', ARGV[2],
  'registered_at', ARGV[3], 'last_seen', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', p.worker_ids, 0, ARGV[1])
for _, runtime in ipairs(runtimes) do
  name_runtime(runtime, p)
  redis.call('SADD', p.runtime .. runtime .. p.workers_suffix, ARGV[1])
end
return {'ok'}
