-- Shared by the scripts that give a running job back (inlined by `-- @include requeue`).

-- Put a running job back on its runtime's queue under its original sequence number, ahead of
-- every job submitted after it, unbind it from its worker and wake a waiting worker.
local function requeue_at_head(job, job_id, now, queue_prefix, wake_prefix)
  local f = redis.call('HMGET', job, 'runtime', 'seq')
  redis.call('HSET', job, 'status', 'pending', 'updated_at', now)
  redis.call('HDEL', job, 'worker_id', 'lease', 'started_at')
  redis.call('ZADD', queue_prefix .. f[1], f[2], job_id)
  redis.call('PUBLISH', wake_prefix .. f[1], job_id)
end
