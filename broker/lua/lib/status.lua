-- Every status change goes through set_status (`-- @include status`), so the listing index,
-- the running count per runtime and the counters stay true whatever the transition.
-- `p` holds: index (prefix of the per-status sorted sets), running (hash runtime -> jobs
-- running), stats (hash of counters).

-- Move a job from status `old` (nil: it is being created) to `new` (nil: it is being deleted).
local function set_status(job, job_id, old, new, p)
  if old == new then
    return
  end
  local f = redis.call('HMGET', job, 'n', 'runtime')
  if old then
    redis.call('ZREM', p.index .. old, job_id)
  end
  if new then
    redis.call('ZADD', p.index .. new, f[1], job_id)
    redis.call('HSET', job, 'status', new)
  end
  if old == 'running' then
    redis.call('HINCRBY', p.running, f[2], -1)
  elseif new == 'running' then
    redis.call('HINCRBY', p.running, f[2], 1)
    redis.call('HINCRBY', p.stats, 'handed_out', 1)
  end
  if new == 'succeeded' or new == 'failed' or new == 'cancelled' then
    redis.call('HINCRBY', p.stats, new, 1)
  end
end
