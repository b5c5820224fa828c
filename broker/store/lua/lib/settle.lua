-- Shared by claim, sweep and unregister (`-- @include settle`): settle what time has decided,
-- a bounded batch at a time. `p` as in giveback, plus the keys workers, delayed, tombstones,
-- leases, clock and dead_workers, and the prefixes runtime and workers_suffix.
-- @include giveback
-- @include forget

-- Add `gap` ms to every score of a sorted set.
local function postpone_all(key, gap)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    redis.call('ZADD', key, tonumber(all[i + 1]) + gap, all[i])
  end
end

-- Time nobody could be heard through does not count against workers or leases. Every settle
-- moves the clock on; a gap longer than `threshold` ms (more than the sweeps' own spacing)
-- means no broker reached Redis meanwhile: Redis stalled or was away, or every broker was
-- down. Worker and lease deadlines move on by the gap before anything is judged, so an outage
-- costs a worker at most `threshold` ms of its timeout. The clock only moves forward, so
-- brokers whose clocks disagree by less than the threshold never see a gap that is not there.
local function absorb_outage(now, threshold, p)
  local last = tonumber(redis.call('GET', p.clock))
  local gap = last and (tonumber(now) - last) or 0
  if gap > tonumber(threshold) then
    postpone_all(p.workers, gap)
    postpone_all(p.leases, gap)
  end
  if not last or gap >= 100 then  -- written at most ten times a second
    redis.call('SET', p.clock, now)
  end
end

-- A worker leaves: the listing of worker ids, every per-runtime worker set it joined; and it no
-- longer names its runtimes.
local function leave(worker_id, runtimes_json, p)
  redis.call('ZREM', p.worker_ids, worker_id)
  if runtimes_json then
    for _, runtime in ipairs(cjson.decode(runtimes_json)) do
      redis.call('SREM', p.runtime .. runtime .. p.workers_suffix, worker_id)
      redis.call('HSET', p.runtime_seen, runtime, p.now)
      unname_runtime(runtime, p)
    end
  end
end

-- A dead worker's record on the list p.dead_workers (GET /workers/dead), newest first, the
-- last 100 kept. `w`: its hash's Runtime, registered_at, last_seen. cjson writes an empty
-- table as {}, so the jobs it gave back are written as a JSON list of their own.
local function record_dead(worker_id, w, gave_back, now, p)
  local record = cjson.encode({worker_id = worker_id, Runtime = cjson.decode(w[1]),
    registered_at = tonumber(w[2]), last_seen = tonumber(w[3]), dead_at = tonumber(now)})
  local jobs = #gave_back > 0 and cjson.encode(gave_back) or '[]'
  redis.call('LPUSH', p.dead_workers,
    string.sub(record, 1, -2) .. ',"gave_back":' .. jobs .. '}')
  redis.call('LTRIM', p.dead_workers, 0, 99)
end

-- Workers not heard from by their deadline are dead: their running jobs are given back (or
-- failed, out of attempts), a record of them kept, and their records removed.
local function reap_dead_workers(now, limit, p)
  local dead = redis.call('ZRANGE', p.workers, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, worker_id in ipairs(dead) do
    local running = p.worker .. worker_id .. p.jobs_suffix
    local gave_back = {}
    for _, job_id in ipairs(redis.call('SMEMBERS', running)) do
      local job = p.job .. job_id
      local j = redis.call('HMGET', job, 'status', 'worker_id')
      if j[1] == 'running' and j[2] == worker_id then
        give_back(job, job_id, now, 'max_attempts', p, 'worker_dead')
        gave_back[#gave_back + 1] = job_id
      end
    end
    local w = redis.call('HMGET', p.worker .. worker_id, 'Runtime', 'registered_at',
      'last_seen')
    if w[1] then
      record_dead(worker_id, w, gave_back, now, p)
    end
    leave(worker_id, w[1], p)
    redis.call('DEL', p.worker .. worker_id, running)
    redis.call('ZREM', p.workers, worker_id)
  end
  return #dead
end

-- Running jobs past their time limit: given back, or failed with error `timeout`.
local function expire_overdue_jobs(now, limit, p)
  local due = redis.call('ZRANGE', p.deadlines, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    local job = p.job .. job_id
    if redis.call('HGET', job, 'status') == 'running' then
      give_back(job, job_id, now, 'timeout', p, 'timeout')
    else
      redis.call('ZREM', p.deadlines, job_id)
    end
  end
  return #due
end

-- Running jobs whose lease ran out without a heartbeat (their contract's answer was lost, or
-- their worker forgot them): given back, or failed with error `lease_expired`.
local function expire_leases(now, limit, p)
  local due = redis.call('ZRANGE', p.leases, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    local job = p.job .. job_id
    if redis.call('HGET', job, 'status') == 'running' then
      give_back(job, job_id, now, 'lease_expired', p, 'lease_expired')
    else
      redis.call('ZREM', p.leases, job_id)
    end
  end
  return #due
end

-- Retries whose backoff is over go back on their queue under their original sequence number
-- and priority.
local function promote_due_retries(now, limit, p)
  local due = redis.call('ZRANGE', p.delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    redis.call('ZREM', p.delayed, job_id)
    local job = p.job .. job_id
    local f = redis.call('HMGET', job, 'status', 'runtime', 'seq', 'priority')
    if f[1] == 'pending' then
      redis.call('HDEL', job, 'retry_at')
      redis.call('ZADD', p.queue .. f[2], queue_score(f[3], f[4]), job_id)
      wake_waiters(p, f[2], job_id)
    end
  end
  return #due
end

-- Cancelled jobs deleted while running are kept as tombstones so their worker learns of it;
-- once their time is up they go for good.
local function purge_tombstones(now, limit, p)
  local due = redis.call('ZRANGE', p.tombstones, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    redis.call('ZREM', p.tombstones, job_id)
    local job = p.job .. job_id
    local status = redis.call('HGET', job, 'status')
    if status then
      forget_job(job, job_id, status, p)
    end
  end
  return #due
end

-- Finished jobs whose retention is over go for good (forget.lua); one set back to pending in
-- the meantime left the retention set then, so it is kept.
local function purge_expired_jobs(now, limit, p)
  local due = redis.call('ZRANGE', p.expiry, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    redis.call('ZREM', p.expiry, job_id)
    local job = p.job .. job_id
    local status = redis.call('HGET', job, 'status')
    if FINISHED[status] then
      local data2_id = redis.call('HGET', job, 'data2_id')
      p.kind = 'expired'
      forget_job(job, job_id, status, p)
      if status ~= 'succeeded' then  -- a re-run downstream waiting on it waits no more
        job_ended(job_id, data2_id, 'deleted', now, p)
      end
    end
  end
  return #due
end
