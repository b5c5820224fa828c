-- Shared by the scripts that take a running job from its worker (`-- @include giveback`).
-- @include status
-- @include wake
-- @include queue
-- @include deps
-- `p` holds key prefixes: job, queue, wake, worker, jobs_suffix,
-- and the index keys of set_status; and the key deadlines.

-- Put a running job back on its runtime's queue under its original sequence number and its
-- priority, ahead of every job of that priority submitted after it, unbound from any worker,
-- and wake a waiting worker. `cause` is its given_back event's reason.
local function requeue_at_head(job, job_id, now, p, cause)
  local f = redis.call('HMGET', job, 'runtime', 'seq', 'priority')
  p.kind, p.why = 'given_back', cause
  set_status(job, job_id, 'running', 'pending', p)
  redis.call('HSET', job, 'updated_at', now)
  redis.call('HDEL', job, 'worker_id', 'lease', 'started_at')
  redis.call('ZADD', p.queue .. f[1], queue_score(f[2], f[3]), job_id)
  wake_waiters(p, f[1], job_id)
end

-- A running job whose run ended without a report (its worker died, or its time ran out):
-- pending again at the head of its queue, or failed with `reason` once it has started
-- max_attempts runs. Either way no worker holds it and its lease is void. `cause` (why it was
-- taken: worker_dead, worker_left, timeout, lease_expired) is the given_back event's reason.
local function give_back(job, job_id, now, reason, p, cause)
  redis.call('ZREM', p.deadlines, job_id)
  local f = redis.call('HMGET', job, 'attempts', 'max_attempts', 'worker_id')
  if f[3] then
    redis.call('SREM', p.worker .. f[3] .. p.jobs_suffix, job_id)
  end
  if tonumber(f[1]) >= tonumber(f[2] or 1) then
    set_status(job, job_id, 'running', 'failed', p, nil, nil, 'error', reason,
      'finished_at', now, 'updated_at', now)
    redis.call('HDEL', job, 'lease')
    job_ended(job_id, redis.call('HGET', job, 'data2_id'), 'failed: ' .. reason, now, p)
    return 'failed'
  end
  requeue_at_head(job, job_id, now, p, cause)
  return 'requeued'
end
