-- Pipelines (`-- @include deps`): jobs that wait for their inputs and for other jobs.
--
-- A job is `waiting` while it has blockers: an input (data1_id, or a function_id naming a data
-- id) that is not filled yet, or a job named in its `after` that has not succeeded. It keeps
-- their count in its `waits` field and is a member of one waiters set per blocker
-- (p.data_waiters .. data_id, p.job_waiters .. job_id). The script that fills a
-- blocker (a requester's data commit, the producer's success report) counts each waiter down
-- and queues those left with none, in the same step. The script that ends a blocker for good
-- without success (a final failure, a cancel, a delete) fails its waiters, and theirs, through
-- the work list p.cascade, a bounded number per script; the sweep finishes a long cascade.
-- `p` also holds job, data, now, and what set_status and schedule need.
-- @include status
-- @include wake
-- @include queue
-- @include schedule

local CASCADE_BATCH = 100
local MAX_ERROR = 1000

local function data_waiters(p, data_id)
  return p.data_waiters .. data_id
end

local function job_waiters(p, job_id)
  return p.job_waiters .. job_id
end

-- Whether data `data_id` is filled: 'filled'; 'unfilled' (reserved, or the output of a job
-- that has not succeeded yet: also answered, as the producer); 'failed' (its producer ended
-- without success: also the producer and its status); or 'missing'.
local function data_state(data_id, p)
  local d = redis.call('HMGET', p.data .. data_id, 'state', 'filled', 'output_of')
  if not d[1] then
    return 'missing'
  end
  if d[2] == '1' then
    return 'filled'
  end
  if d[3] then
    local status = redis.call('HGET', p.job .. d[3], 'status')
    if status == 'succeeded' then
      return 'filled'
    elseif status == 'failed' or status == 'cancelled' then
      return 'failed', d[3], status
    elseif status then
      return 'unfilled', d[3]
    end
  end
  if d[1] == 'reserved' then
    return 'unfilled'
  end
  return 'filled'
end

-- What a job with these inputs and `after` list waits on: a list of waiters-set keys (each
-- once), and, when `strict`, the first upstream that already ended without success ("job X
-- failed"), which fails the job at once instead; without `strict` (a re-run) such an upstream
-- is waited on, in case it runs again. `after` ids must exist (checked by the caller).
-- `states`, when given, holds data_state's answers (as lists) already read for data_ids.
local function blockers_of(data_ids, after, strict, p, states)
  local keys, seen = {}, {}
  local function add(key)
    if not seen[key] then
      seen[key] = true
      table.insert(keys, key)
    end
  end
  for i, data_id in ipairs(data_ids) do
    local state, producer, status
    if states and states[i] then
      state, producer, status = unpack(states[i])
    else
      state, producer, status = data_state(data_id, p)
    end
    if state == 'unfilled' or (state == 'failed' and not strict) then
      add(data_waiters(p, data_id))
    elseif state == 'failed' then
      return keys, 'job ' .. producer .. ' ' .. status
    end
  end
  for _, upstream in ipairs(after) do
    local status = redis.call('HGET', p.job .. upstream, 'status')
    if status == 'failed' or status == 'cancelled' then
      if strict then
        return keys, 'job ' .. upstream .. ' ' .. status
      end
      add(job_waiters(p, upstream))
    elseif status ~= 'succeeded' then
      add(job_waiters(p, upstream))
    end
  end
  return keys, nil
end

-- The data ids a job's inputs may name: its data1_id, and its function_id when it is shaped
-- like a data id (one that names no data is 'missing' to data_state, and waited on by nobody).
local function input_ids(data1_id, function_id)
  local out = {}
  if data1_id and data1_id ~= '' then
    table.insert(out, data1_id)
  end
  if function_id and function_id ~= data1_id and #function_id == 8 then
    table.insert(out, function_id)
  end
  return out
end

-- Make `job_id` wait on `keys` (from blockers_of).
local function wait_on(job, job_id, keys)
  for _, key in ipairs(keys) do
    redis.call('SADD', key, job_id)
  end
  redis.call('HSET', job, 'waits', #keys)
end

-- A job with no blocker left goes on: scheduled when its run_at is still ahead, else pending
-- at the tail of its priority (waking a worker). `f` is {n, runtime, priority, run_at}.
local function go_on(job, job_id, old, f, now, p)
  redis.call('HDEL', job, 'waits')
  local due = tonumber(f[4])
  if due and due > tonumber(now) then
    set_status(job, job_id, old, 'scheduled', p, {f[1], f[2]}, nil, 'updated_at', now)
    schedule_job(job_id, due, p)
    return
  end
  enqueue_fresh(job, job_id, old, {f[1], f[2], f[3]}, now, p)
end

-- The blocker whose waiters set is `key` is filled: each job waiting on it has one fewer, and
-- those left with none go on. The set goes.
local function release_waiters(key, now, p)
  for _, job_id in ipairs(redis.call('SMEMBERS', key)) do
    local job = p.job .. job_id
    local f = redis.call('HMGET', job, 'status', 'n', 'runtime', 'priority', 'run_at')
    if f[1] == 'waiting' and redis.call('HINCRBY', job, 'waits', -1) <= 0 then
      go_on(job, job_id, 'waiting', {f[2], f[3], f[4], f[5]}, now, p)
    end
  end
  redis.call('DEL', key)
end

-- A job succeeded: what waited on it, or on the output it wrote, may go on.
local function job_succeeded(job_id, data2_id, now, p)
  release_waiters(job_waiters(p, job_id), now, p)
  if data2_id and data2_id ~= '' and redis.call('EXISTS', p.data .. data2_id) == 1 then
    redis.call('HSET', p.data .. data2_id, 'filled', '1')
    release_waiters(data_waiters(p, data2_id), now, p)
  end
end

-- Queue the waiters in `key` for failing with `cause`, and drop the set.
local function doom_waiters(key, cause, p)
  local waiting = redis.call('SMEMBERS', key)
  for _, job_id in ipairs(waiting) do
    redis.call('RPUSH', p.cascade, job_id .. ' ' .. cause)
  end
  redis.call('DEL', key)
end

-- A waiting job leaves (cancelled or deleted): out of the waiters sets it is in.
local function stop_waiting(job, job_id, p)
  local f = redis.call('HMGET', job, 'data1_id', 'function_id', 'after')
  for _, data_id in ipairs(input_ids(f[1], f[2])) do
    redis.call('SREM', data_waiters(p, data_id), job_id)
  end
  for _, upstream in ipairs(cjson.decode(f[3] or '[]')) do
    redis.call('SREM', job_waiters(p, upstream), job_id)
  end
  redis.call('HDEL', job, 'waits')
end

-- Fail the queued waiters, a bounded batch; each one failed dooms its own waiters in turn.
-- Answers how many were failed.
local function run_cascade(now, limit, p)
  local failed = 0
  for _ = 1, limit do
    local entry = redis.call('LPOP', p.cascade)
    if not entry then
      break
    end
    local space = string.find(entry, ' ', 1, true)
    local job_id, cause = string.sub(entry, 1, space - 1), string.sub(entry, space + 1)
    local job = p.job .. job_id
    local f = redis.call('HMGET', job, 'status', 'data2_id')
    if f[1] == 'waiting' then
      local err = string.sub('upstream_failed: ' .. cause, 1, MAX_ERROR)
      stop_waiting(job, job_id, p)  -- what else it waited on may still come
      set_status(job, job_id, 'waiting', 'failed', p, nil, nil, 'error', err,
        'finished_at', now, 'updated_at', now)
      failed = failed + 1
      local next_cause = 'job ' .. job_id .. ' failed: ' .. err
      doom_waiters(job_waiters(p, job_id), next_cause, p)
      if f[2] and f[2] ~= '' then
        doom_waiters(data_waiters(p, f[2]), next_cause, p)
      end
    end
  end
  return failed
end

-- A job ended for good without success (`how`: "failed: <error>", "cancelled", "deleted"):
-- what waited on it, or on the output it was to write, fails; a first batch now.
local function job_ended(job_id, data2_id, how, now, p)
  local cause = string.sub('job ' .. job_id .. ' ' .. how, 1, MAX_ERROR)
  doom_waiters(job_waiters(p, job_id), cause, p)
  if data2_id and data2_id ~= '' then
    doom_waiters(data_waiters(p, data2_id), cause, p)
  end
  run_cascade(now, CASCADE_BATCH, p)
end
