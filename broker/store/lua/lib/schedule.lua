-- Jobs that run later (`-- @include schedule`): a scheduled job is in no queue but in the
-- sorted set `p.scheduled`, scored by when it is due (ms). When a job becomes the earliest
-- there, its due time is published on `p.schedule_channel`, so every broker process sets its
-- timer no later (store/schedule.py): due jobs are queued on time with nothing polling.
-- `p` also holds seq (the enqueue sequence counter) and the keys of set_status.
-- @include status
-- @include wake
-- @include queue

-- Put `job_id` in the scheduled set, due at `due` ms.
local function schedule_job(job_id, due, p)
  redis.call('ZADD', p.scheduled, due, job_id)
  local head = redis.call('ZRANGE', p.scheduled, 0, 0)
  if head[1] == job_id then
    redis.call('PUBLISH', p.schedule_channel, due)
  end
end

-- A job becomes pending at the tail of its runtime's queue among its priority: a fresh
-- sequence number, so jobs scheduled for the same moment queue in the order they fall due.
-- `f` is {n, runtime, priority}; `old` its status now. Wakes a waiting worker.
local function enqueue_fresh(job, job_id, old, f, now, p)
  local seq = redis.call('INCR', p.seq)
  set_status(job, job_id, old, 'pending', p, {f[1], f[2]}, nil, 'seq', seq, 'updated_at', now)
  redis.call('ZADD', p.queue .. f[2], queue_score(seq, f[3]), job_id)
  wake_waiters(p, f[2], job_id)
end

-- Scheduled jobs whose time has come become pending, a bounded batch at a time, earliest
-- first. Answers how many.
local function promote_scheduled(now, limit, p)
  local due = redis.call('ZRANGE', p.scheduled, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    redis.call('ZREM', p.scheduled, job_id)
    local job = p.job .. job_id
    local f = redis.call('HMGET', job, 'status', 'n', 'runtime', 'priority')
    if f[1] == 'scheduled' then
      enqueue_fresh(job, job_id, 'scheduled', {f[2], f[3], f[4]}, now, p)
    end
  end
  return #due
end
