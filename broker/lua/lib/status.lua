-- Every status change goes through set_status (`-- @include status`), so the listing index,
-- the running count per runtime and the counters stay true whatever the transition.
-- `p` holds: index (prefix of the per-status sorted sets), running (hash runtime -> jobs
-- running), stats (hash of counters).

-- Move a job from status `old` (nil: it is being created) to `new` (nil: it is being deleted).
-- `known` ({n, runtime}), when the caller has read those fields already, saves reading them;
-- `also` (field, value, ...) is written with the new status, in the same HSET.
local function set_status(job, job_id, old, new, p, known, also)
  if old == new then
    return
  end
  local f = known or redis.call('HMGET', job, 'n', 'runtime')
  if old then
    redis.call('ZREM', p.index .. old, job_id)
  end
  if new then
    redis.call('ZADD', p.index .. new, f[1], job_id)
    redis.call('HSET', job, 'status', new, unpack(also or {}))
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

-- Move many jobs from pending to running at once (a claim of several): the same index and
-- counter changes as set_status, one command each for the whole batch. `ids`, `ns` and
-- `runtimes` are the jobs' ids, their `n` fields and their runtimes; the caller writes each
-- job's `status` field itself, with the other fields a claim sets.
local function start_running(ids, ns, runtimes, p)
  local scored, per_runtime = {}, {}
  for i, job_id in ipairs(ids) do
    scored[2 * i - 1], scored[2 * i] = ns[i], job_id
    per_runtime[runtimes[i]] = (per_runtime[runtimes[i]] or 0) + 1
  end
  redis.call('ZREM', p.index .. 'pending', unpack(ids))
  redis.call('ZADD', p.index .. 'running', unpack(scored))
  for runtime, count in pairs(per_runtime) do
    redis.call('HINCRBY', p.running, runtime, count)
  end
  redis.call('HINCRBY', p.stats, 'handed_out', #ids)
end
