-- Shared by claim and report_next (`-- @include take`): hand a worker its next jobs.
-- take_jobs(k, a, p) is claim.lua's transition: `k` and `a` are claim.lua's KEYS and ARGV
-- (its prefixes argument unused: `p` is the decoded one). It answers what claim.lua returns.
-- @include status
-- @include wake
-- @include giveback
-- @include settle

local function take_jobs(k, a, p)
  local worker_id, now, lease = a[1], a[2], a[3]
  local w = redis.call('HMGET', k[1], 'Runtime', 'lease', 'jobs')
  local runtimes_json = w[1]
  if not runtimes_json then
    return {'unknown_worker'}
  end
  redis.call('HSET', k[1], 'last_seen', now)
  redis.call('ZADD', k[3], a[4], worker_id)
  p.now = now
  p.workers, p.deadlines, p.delayed = k[3], k[4], k[5]

  local function answer(job_ids, leases, more)
    local out = {'ok', runtimes_json, more, #job_ids}
    for i, job_id in ipairs(job_ids) do
      local f = redis.call('HMGET', p.job .. job_id, 'data1_id', 'data2_id', 'function_id',
        'runtime', 'attempts', 'timeout', 'max_attempts', 'created_at')
      table.insert(out, job_id)
      table.insert(out, leases[i])
      for _, v in ipairs(f) do
        table.insert(out, v)
      end
    end
    return out
  end

  local function lease_of(i)
    if i == 1 then
      return lease
    end
    return lease .. '.' .. i
  end

  if w[2] == lease then  -- the same request again: answer the jobs its leases still hold
    local held, leases = {}, {}
    for i, job_id in ipairs(cjson.decode(w[3])) do
      local j = redis.call('HMGET', p.job .. job_id, 'status', 'lease')
      if j[1] == 'running' and j[2] == lease_of(i) then
        table.insert(held, job_id)
        table.insert(leases, j[2])
      end
    end
    if #held == 0 then
      return {'empty', runtimes_json}
    end
    return answer(held, leases, 1)
  end

  local batch = tonumber(a[6])
  absorb_outage(now, a[10], p)
  p.lease_until = tonumber(now) + tonumber(a[9])
  reap_dead_workers(now, batch, p)
  expire_leases(now, batch, p)
  expire_overdue_jobs(now, batch, p)
  promote_due_retries(now, batch, p)

  local runtimes = cjson.decode(runtimes_json)

  -- Paused runtimes hand out nothing: the worker takes from the others.
  local active = runtimes
  if redis.call('SCARD', p.paused) > 0 then
    active = {}
    local paused = redis.call('SMISMEMBER', p.paused, unpack(runtimes))
    for i, runtime in ipairs(runtimes) do
      if paused[i] == 0 then
        table.insert(active, runtime)
      end
    end
  end

  -- One runtime: its first jobs, up to the count, popped at once (ids and scores, in order).
  local popped, next_popped = nil, 1
  if #active == 1 then
    popped = redis.call('ZPOPMIN', p.queue .. active[1], tonumber(a[8]))
  end

  -- Pop the first pending job among the worker's active queues (the lowest score: the highest
  -- priority, then the oldest): its id, or nil.
  local function pop_oldest()
    if popped then
      local job_id = popped[next_popped]
      next_popped = next_popped + 2
      return job_id
    end
    local best_queue, best_id, best_score
    for _, runtime in ipairs(active) do
      local queue = p.queue .. runtime
      local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
      if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
        best_queue, best_id, best_score = queue, head[1], tonumber(head[2])
      end
    end
    if best_id then
      redis.call('ZREM', best_queue, best_id)
    end
    return best_id
  end

  -- A claim of several gathers its writes; a claim of one sends them as it goes.
  local out, taken, g = {'ok', runtimes_json, 0, 0}, {}, nil
  if tonumber(a[8]) > 1 then
    g = gathered_writes()
  end
  for i = 1, tonumber(a[8]) do
    local job_id = pop_oldest()
    if not job_id then
      break
    end
    local job = p.job .. job_id
    local f = redis.call('HMGET', job, 'data1_id', 'data2_id', 'function_id', 'runtime',
      'attempts', 'timeout', 'max_attempts', 'created_at', 'n')
    local attempts = (tonumber(f[5]) or 0) + 1
    set_status(job, job_id, 'pending', 'running', p, {f[9], f[4]}, g, 'attempts', attempts,
      'worker_id', worker_id, 'lease', lease_of(i), 'started_at', now, 'updated_at', now)
    gather(g, 'ZADD', k[4], job_id, tonumber(now) + math.floor(tonumber(f[6]) * 1000))
    gather(g, 'SADD', k[2], job_id)
    if f[2] ~= '' and redis.call('EXISTS', p.data .. f[2]) == 1 then
      redis.call('HSET', p.data .. f[2], 'job_id', job_id, 'worker_id', worker_id, 'lease',
        lease_of(i))
    end
    taken[i] = job_id
    for _, v in ipairs({job_id, lease_of(i), f[1], f[2], f[3], f[4], tostring(attempts), f[6],
        f[7], f[8]}) do
      table.insert(out, v)
    end
  end
  if #taken == 0 then
    local wait = tonumber(a[7])
    redis.call('ZADD', k[3], tonumber(a[4]) + wait, worker_id)  -- waiting is heard from
    if wait > 0 then
      mark_waiting(p, runtimes, wait + 1000)
    end
    return {'empty', runtimes_json}
  end
  if g then
    write_gathered(g)
  end
  redis.call('HSET', k[1], 'lease', lease, 'jobs', cjson.encode(taken))

  for _, runtime in ipairs(active) do
    if redis.call('ZCARD', p.queue .. runtime) > 0 then
      out[3] = 1
      break
    end
  end
  out[4] = #taken
  return out
end
