#!lua flags=allow-oom
--[[ touch: a request carrying a worker's id counts as hearing from that worker.

Invariant: only a registered worker is touched; an unknown id creates nothing.

It runs when Redis is full (flags=allow-oom): a heartbeat overwrites two fields and adds
nothing.

KEYS[1] worker hash
KEYS[2] workers by the time they will be declared dead (sorted set)
ARGV[1] worker_id
ARGV[2] now, ms since the epoch
ARGV[3] the worker's new deadline, ms

Returns {"ok"} | {"unknown_worker"}
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_worker'}
end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok'}
