#!lua flags=allow-oom
--[[ pause: a requester pauses a runtime, or resumes it.

Invariant: a paused runtime is in the paused set, and no claim hands out its jobs (claim.lua);
its jobs stay in its queue in order, and new ones join it. Resuming wakes a worker waiting on
it when its queue holds a job (a woken claim that leaves jobs behind wakes the next waiter).
The set lives in Redis, so a pause outlasts every broker process. Pausing a runtime no job or
worker names yet is allowed (it is paused when they come), within the runtime limit.

It runs when Redis is full (flags=allow-oom): pausing is how an operator stops work from
growing, and adds one short member at most.

KEYS[1] the paused runtimes (set)
ARGV[1] runtime
ARGV[2] "1" to pause, "" to resume
ARGV[3] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[4] how many runtimes may be paused at once (the broker's runtime limit)

Returns {"ok", changed} (changed 1 when the runtime was not already so)
      | {"too_many_runtimes", limit}
]]
-- @include wake
local runtime = ARGV[1]
if ARGV[2] == '1' then
  if redis.call('SISMEMBER', KEYS[1], runtime) == 1 then
    return {'ok', 0}
  end
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return {'too_many_runtimes', ARGV[4]}
  end
  redis.call('SADD', KEYS[1], runtime)
  return {'ok', 1}
end
local p = cjson.decode(ARGV[3])
if redis.call('SREM', KEYS[1], runtime) == 0 then
  return {'ok', 0}
end
if redis.call('ZCARD', p.queue .. runtime) > 0 then
  wake_waiters(p, runtime, 'resumed')
end
return {'ok', 1}
