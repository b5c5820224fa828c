-- Shared by report and report_batch (`-- @include reportjob`).
-- @include fields
-- @include holder
-- @include status
-- @include output
-- @include deps
-- report_job(k, a, p, g) is the report transition: `k` and `a` are report.lua's
-- KEYS and ARGV (its prefixes argument unused), `p` the decoded key prefixes, `g` a batch's
-- gathered writes (status.lua) or nil to write at once. It answers what report.lua returns.
local function report_job(k, a, p, g)
  local job, now = k[1], a[7]
  if k[7] ~= '' and redis.call('EXISTS', k[7]) == 1 then  -- "": the caller touched it
    redis.call('HSET', k[7], 'last_seen', now)
    redis.call('ZADD', k[4], a[8], a[2])
  end
  local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease', 'data2_id', 'attempts',
    'max_attempts', 'started_at', 'n', 'runtime')
  local status = j[1]
  local refused = refused_writer(j, a[2], a[3])
  if refused then
    return refused
  end
  if status ~= 'running' then
    if status == a[4] then
      return {'ok'}
    end
    return {'illegal', status}
  end
  local changed = first_changed(job, a, 15)
  if changed then
    return {'locked', changed, status}
  end
  local output = a[5]
  if output ~= '' and output ~= j[4] then
    if j[4] ~= '' then
      return {'locked', 'data2_id', status}
    end
    if redis.call('EXISTS', k[3]) == 0 then
      return {'unknown_data', 'data2_id'}
    end
    local owner = output_owner(k[3], a[1], p)
    if owner then
      return {'output_taken', owner}
    end
    take_output(k[3], a[1])
    redis.call('HSET', job, 'data2_id', output)
  end
  if a[4] == 'running' then
    redis.call('HSET', job, 'updated_at', now)
    redis.call('ZADD', p.leases, 'XX', tonumber(now) + tonumber(a[14]), a[1])
    return {'ok', ''}
  end
  gather(g, 'SREM', k[2], a[1])
  gather(g, 'ZREM', k[5], a[1])
  local known, also = {j[8], j[9]}, {'updated_at', now}
  if a[4] == 'failed' and a[6] ~= '' then
    also = {'updated_at', now, 'error', a[6]}
  end
  local attempts = tonumber(j[5])
  if a[4] == 'failed' and a[9] == '1' and attempts < tonumber(j[6] or 1) then
    local backoff = math.min(tonumber(a[11]), tonumber(a[10]) * 2 ^ (attempts - 1))
    local due = tonumber(now) + math.floor(backoff * (0.5 + 0.5 * tonumber(a[12])))
    table.insert(also, 'retry_at')
    table.insert(also, due)
    p.kind = 'retried'
    set_status(job, a[1], 'running', 'pending', p, known, g, unpack(also))
    redis.call('HDEL', job, 'worker_id', 'lease', 'started_at')
    gather(g, 'ZADD', k[6], a[1], due)
    return {'ok', j[7]}
  end
  table.insert(also, 'finished_at')
  table.insert(also, now)
  set_status(job, a[1], 'running', a[4], p, known, g, unpack(also))
  local written = output ~= '' and output or j[4]
  if a[4] == 'succeeded' then
    job_succeeded(a[1], written, now, p)
  else
    job_ended(a[1], written, 'failed: ' .. (a[6] ~= '' and a[6] or 'no error given'), now, p)
  end
  return {'ok', j[7]}
end
