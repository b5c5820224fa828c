-- Waking long-polling workers (`-- @include wake`). A claim that finds nothing for
-- a worker about to wait marks each of its runtimes as waited on (`p.waiting .. runtime`, a key
-- that outlives the wait by a second); a job that becomes pending is published on its
-- runtime's channel only while that mark is there. Every broker process hears every publish,
-- so a runtime nobody waits on costs no broker any work per job. The mark is made in the same
-- script as the claim that found nothing: a job that lands after that claim sees the mark.

-- Mark `runtimes` as waited on for `ms` more milliseconds (never shortening a longer wait).
local function mark_waiting(p, runtimes, ms)
  for _, runtime in ipairs(runtimes) do
    local key = p.waiting .. runtime
    if redis.call('PTTL', key) < ms then
      redis.call('SET', key, '1', 'PX', ms)
    end
  end
end

-- A job `message` became pending on `runtime`: wake its waiters, if it has any.
local function wake_waiters(p, runtime, message)
  if redis.call('EXISTS', p.waiting .. runtime) == 1 then
    redis.call('PUBLISH', p.wake .. runtime, message)
  end
end
