-- Every status change goes through set_status (`-- @include status`), so the listing index,
-- the running count per runtime, the counters, the leases and the runtimes' reference counts
-- stay true whatever the transition. `p` holds: index (prefix of the per-status sorted sets),
-- running, scheduled_counts and waiting_counts (hashes runtime -> jobs in that status), stats (hash of
-- counters), minutes (prefix of the per-minute counters, below), leases (sorted set of running
-- jobs by when their lease runs out), expiry and job_ttl (retention, below), now, and, for a
-- move to running, lease_until (when the new lease runs out, ms). Each change also records its
-- event (events.lua: record_event).
--
-- A batch (a claim of several jobs, submit_batch, report_batch) gathers the writes that many
-- jobs make to the same keys (the indexes, the counters, a queue, a worker's set) in a
-- `gathered` table and sends each key's writes as one command at the end (`write_gathered`):
-- one ZADD of fifty members costs far less than fifty. Nothing in a batch reads those keys
-- before the end, and each job changes status at most once per batch (every move is out of
-- the status the batch requires), so the result is the same as writing them one by one.

-- @include events

local function gathered_writes()
  return {calls = {}, by_command = {SADD = {}, SREM = {}, ZADD = {}, ZREM = {}}, counts = {},
    count_keys = {}, ttls = {}}
end

-- Add a member (with its score, for ZADD) to one command on `key`: SADD, SREM, ZADD, ZREM.
-- Without `g` (one job alone), the command is sent at once.
local function gather(g, command, key, member, score)
  if not g then
    if score then
      redis.call(command, key, score, member)
    else
      redis.call(command, key, member)
    end
    return
  end
  local by_key = g.by_command[command]
  local call = by_key[key]
  if not call then
    call = {command, key}
    by_key[key] = call
    g.calls[#g.calls + 1] = call
  end
  if score then
    call[#call + 1] = score
  end
  call[#call + 1] = member
end

-- HINCRBY `key` `field` by `by`; with `ttl` (s), a count that creates the field sets the key's
-- TTL, so a hash of a few fields that only grow is given one a few times, not at every count.
local function add_count(key, field, by, ttl)
  if redis.call('HINCRBY', key, field, by) == by and ttl then
    redis.call('EXPIRE', key, ttl)
  end
end

-- add_count(), summed over the batch.
local function gather_count(g, key, field, by, ttl)
  if not g then
    add_count(key, field, by, ttl)
    return
  end
  local fields = g.counts[key]
  if not fields then
    fields = {}
    g.counts[key] = fields
    g.count_keys[#g.count_keys + 1] = key
    g.ttls[key] = ttl
  end
  fields[field] = (fields[field] or 0) + by
end

-- Jobs handed out and finished are also counted per minute of p.now, in a hash per minute
-- (keys.py: Keys.minute) that goes about two hours after its minute. p.now is set once per
-- script, so the key is built once, not per job of a batch (formatting the number is slow).
local MINUTE_TTL = 7200
local function count_minute(g, p, field)
  p.minute_key = p.minute_key or p.minutes .. math.floor(tonumber(p.now) / 60000)
  gather_count(g, p.minute_key, field, 1, MINUTE_TTL)
end

local function write_gathered(g)
  for _, call in ipairs(g.calls) do
    redis.call(unpack(call))
  end
  for _, key in ipairs(g.count_keys) do
    for field, by in pairs(g.counts[key]) do
      if by ~= 0 then
        add_count(key, field, by, g.ttls[key])
      end
    end
  end
end

-- The broker knows a runtime while a job or a worker names it, and forgets it when the last
-- one goes, so `broker:runtimes` and what is listed per runtime stay as small as the work.
-- `p` holds runtimes (the set) and runtime_refs (hash runtime -> jobs and workers naming it).

-- Whether `runtimes` (a list) may be named: each is known, or there is room for the new ones
-- among at most `max` runtimes.
local function runtimes_fit(runtimes, max, p)
  local new = 0
  for _, runtime in ipairs(runtimes) do
    if redis.call('SISMEMBER', p.runtimes, runtime) == 0 then
      new = new + 1
    end
  end
  return new == 0 or redis.call('SCARD', p.runtimes) + new <= tonumber(max)
end

-- One more job or worker names `runtime` (check runtimes_fit first). `g`: a batch's gathered
-- writes, or nil.
local function name_runtime(runtime, p, g)
  redis.call('SADD', p.runtimes, runtime)  -- at once: the next job of a batch counts it
  gather_count(g, p.runtime_refs, runtime, 1)
end

-- One job or worker fewer names `runtime`: at none, the runtime is forgotten. A count below
-- zero is a runtime named before counting began: it is let be, uncounted.
local function unname_runtime(runtime, p)
  local left = redis.call('HINCRBY', p.runtime_refs, runtime, -1)
  if left > 0 then
    return
  end
  redis.call('HDEL', p.runtime_refs, runtime)
  if left == 0 then
    redis.call('SREM', p.runtimes, runtime)
    redis.call('HDEL', p.running, runtime)
  end
end

-- A job in one of these statuses is over; retention removes it `ttl` ms after it got there
-- (the job's own `ttl` field in seconds, else p.job_ttl in ms; 0 keeps it), through the sorted set p.expiry.
-- Every script that changes a status sets p.now (ms) first (record_event needs it too).
local FINISHED = {succeeded = true, failed = true, cancelled = true}

-- Statuses counted per runtime in a hash of their own (runtime -> jobs), and that hash's key in p.
local PER_RUNTIME = {scheduled = 'scheduled_counts', waiting = 'waiting_counts'}

-- The 'error' among field, value pairs, or nil.
local function error_of(...)
  for i = 1, select('#', ...), 2 do
    if select(i, ...) == 'error' then
      return (select(i + 1, ...))
    end
  end
  return nil
end

-- Move a job from status `old` (nil: it is being created) to `new` (nil: it is being deleted).
-- `known` ({n, runtime}), when the caller has read those fields already, saves reading them.
-- `g`, in a batch, gathers the index and counter writes; nil writes them at once.
-- Further arguments (field, value, ...) are written with the new status, in the same HSET.
local function set_status(job, job_id, old, new, p, known, g, ...)
  if old == new then
    return
  end
  local f = known or redis.call('HMGET', job, 'n', 'runtime')
  if old then
    gather(g, 'ZREM', p.index .. old, job_id)
  end
  if new then
    gather(g, 'ZADD', p.index .. new, job_id, f[1])
    redis.call('HSET', job, 'status', new, ...)
  end
  -- Only a failure, or a failed run to retry, carries an error among the fields.
  record_event(job, job_id, old, new, f[2], p,
    (new == 'failed' or p.kind == 'retried') and error_of(...) or nil)
  if not new then
    unname_runtime(f[2], p)  -- a job deleted; one created was named by create_job
  end
  if old and PER_RUNTIME[old] then
    gather_count(g, p[PER_RUNTIME[old]], f[2], -1)
  end
  if new and PER_RUNTIME[new] then
    gather_count(g, p[PER_RUNTIME[new]], f[2], 1)
  end
  if old == 'running' then
    gather_count(g, p.running, f[2], -1)
    gather(g, 'ZREM', p.leases, job_id)
  elseif new == 'running' then
    gather_count(g, p.running, f[2], 1)
    gather_count(g, p.stats, 'handed_out', 1)
    count_minute(g, p, 'handed_out')
    gather(g, 'ZADD', p.leases, job_id, p.lease_until)
  end
  if FINISHED[new] then
    gather_count(g, p.stats, new, 1)
    count_minute(g, p, new)
    local own = tonumber(redis.call('HGET', job, 'ttl'))
    local ttl = own and own * 1000 or p.job_ttl
    if ttl > 0 then
      gather(g, 'ZADD', p.expiry, job_id, tonumber(p.now) + ttl)
    end
  elseif FINISHED[old] then
    gather(g, 'ZREM', p.expiry, job_id)  -- run again, or deleted: retention lets it be
  end
end
