#!lua
--[[ requeue: a requester edits a waiting, scheduled or pending job, or sets a finished job back
to pending (or scheduled, or waiting while its inputs or `after` jobs are not done) to run it
again. A waiting job's inputs are fixed; its priority, runtime and run_at may change.

Invariant: a pending job sits in exactly one queue, the one of its current runtime, scored by
its priority and sequence number; a scheduled job sits in the scheduled set only. Editing a
pending job keeps its place among its priority (a runtime change moves it to the other queue
under the same sequence number; one waiting out a retry backoff stays in the delayed set and
is queued by its new fields when due). A run_at in the future makes a pending job scheduled;
one not in the future makes a scheduled job pending at once. A job that becomes pending from
scheduled or finished goes to the tail of its priority with a fresh sequence number; re-running
a finished job also starts fresh counts of attempts and give-backs, and leaves retention. A
running job is never touched here.

KEYS[1] job hash
KEYS[2] enqueue sequence counter
KEYS[3] data hash named by a new data1_id (ignored unless data1_id changes to a non-empty id)
KEYS[4] data hash named by a new data2_id (ignored unless data2_id changes to a non-empty id)
KEYS[5] tombstones by the time they go (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] mode: "edit" (the job must stay as it is unless scheduled or pending) | "rerun"
        (finished, scheduled or pending -> pending, or scheduled when run_at is in the future)
ARGV[4] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[5] how many runtimes the broker may know at once
ARGV[6..] field, value pairs to set, among data1_id, data2_id, function_id, runtime,
          priority and run_at (ms since the epoch)

Returns {"ok"} | {"not_found"} | {"illegal", status} | {"locked", field, status}
      | {"unknown_data", field} | {"output_taken", job_id} | {"too_many_runtimes", limit}
]]
-- @include fields
-- @include status
-- @include wake
-- @include output
-- @include queue
-- @include schedule
-- @include deps
-- @include datarefs
local job, job_id, now = KEYS[1], ARGV[1], ARGV[2]
local j = redis.call('HMGET', job, 'status', 'runtime', 'seq', 'data1_id', 'data2_id',
  'priority', 'n', 'retry_at', 'run_at', 'function_id', 'after')
local status = j[1]
if not status then
  return {'not_found'}
end
local changed = first_changed(job, ARGV, 6)
if status == 'running' then
  if ARGV[3] == 'edit' and not changed then
    return {'ok'}
  end
  if ARGV[3] == 'edit' then
    return {'locked', changed, status}
  end
  return {'illegal', status}
end
if status == 'waiting' then  -- what it waits on is fixed; its order and runtime are not
  for i = 6, #ARGV, 2 do
    local name = ARGV[i]
    if (name == 'data1_id' or name == 'data2_id' or name == 'function_id')
        and redis.call('HGET', job, name) ~= ARGV[i + 1] then
      return {'locked', name, status}
    end
  end
  if ARGV[3] == 'rerun' then
    return {'illegal', status}
  end
end
local waiting = status == 'pending' or status == 'scheduled' or status == 'waiting'
if not waiting and ARGV[3] == 'edit' then
  if changed then
    return {'locked', changed, status}
  end
  return {'ok'}
end

local new = {}
for i = 6, #ARGV, 2 do
  new[ARGV[i]] = ARGV[i + 1]
end
if new.data1_id and new.data1_id ~= '' and new.data1_id ~= j[4]
    and redis.call('EXISTS', KEYS[3]) == 0 then
  return {'unknown_data', 'data1_id'}
end
if new.data2_id and new.data2_id ~= '' and new.data2_id ~= j[5]
    and redis.call('EXISTS', KEYS[4]) == 0 then
  return {'unknown_data', 'data2_id'}
end

local p = cjson.decode(ARGV[4])
p.now, p.seq = now, KEYS[2]
local runtime = new.runtime or j[2]
if runtime ~= j[2] and not runtimes_fit({runtime}, ARGV[5], p) then
  return {'too_many_runtimes', ARGV[5]}
end
local new_output = new.data2_id and new.data2_id ~= j[5] and new.data2_id ~= ''
local owner = new_output and output_owner(KEYS[4], job_id, p)
if owner then
  return {'output_taken', owner}
end

-- Checked: now write.
if new.data2_id and new.data2_id ~= j[5] then
  if j[5] and j[5] ~= '' then
    release_output(p.data .. j[5], job_id)
  end
  if new_output then
    take_output(KEYS[4], job_id)
  end
end
recount_names(named_data(j[4], j[5], j[10]),
  named_data(new.data1_id or j[4], new.data2_id or j[5], new.function_id or j[10]), p)
for i = 6, #ARGV, 2 do
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', job, 'updated_at', now)
if runtime ~= j[2] then
  name_runtime(runtime, p)
  unname_runtime(j[2], p)
  local counts = ({scheduled = p.scheduled_counts, waiting = p.waiting_counts})[status]
  if counts then  -- the per-runtime count follows it
    redis.call('HINCRBY', counts, j[2], -1)
    redis.call('HINCRBY', counts, runtime, 1)
  end
end
if status == 'waiting' then  -- it goes on when what it waits on is done, at its new run_at
  return {'ok'}
end
local priority = new.priority or j[6]
local due = tonumber(new.run_at)
local target = status
if due then
  target = due > tonumber(now) and 'scheduled' or 'pending'
elseif ARGV[3] == 'rerun' then
  target = 'pending'
end
due = due or tonumber(j[9])

-- Out of where it is now.
local queued = false
if status == 'pending' then
  queued = redis.call('ZREM', p.queue .. j[2], job_id) == 1
elseif status == 'scheduled' then
  redis.call('ZREM', p.scheduled, job_id)
end

if status == 'pending' and target == 'pending' then  -- an edit: the same place
  if queued then
    redis.call('ZADD', p.queue .. runtime, queue_score(j[3], priority), job_id)
    wake_waiters(p, runtime, job_id)
  end
  return {'ok'}
end
if not waiting then  -- run again: fresh counts, no trace of the last run
  redis.call('HSET', job, 'attempts', 0, 'givebacks', 0)
  redis.call('HDEL', job, 'worker_id', 'lease', 'started_at', 'finished_at', 'error')
  redis.call('ZREM', KEYS[5], job_id)
  -- It waits again for what is still not done (an upstream that failed, in case it runs
  -- again too).
  local after = j[11] and cjson.decode(j[11]) or {}
  local blockers = blockers_of(input_ids(new.data1_id or j[4], new.function_id or j[10]),
    after, false, p)
  if #blockers > 0 then
    set_status(job, job_id, status, 'waiting', p, {j[7], runtime}, nil)
    wait_on(job, job_id, blockers)
    return {'ok'}
  end
end
if j[8] then  -- a retry waiting out its backoff is queued or scheduled from here instead
  redis.call('HDEL', job, 'retry_at')
  redis.call('ZREM', p.delayed, job_id)
end
if target == 'scheduled' then
  set_status(job, job_id, status, 'scheduled', p, {j[7], runtime})
  schedule_job(job_id, due, p)
  return {'ok'}
end
enqueue_fresh(job, job_id, status, {j[7], runtime, priority}, now, p)
return {'ok'}
