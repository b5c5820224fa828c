-- Shared by delete_job and the retention sweep (`-- @include forget`).
-- @include status
-- @include datarefs

-- A job goes for good: out of its status's listing, the tombstones and retention, its
-- runtime and its data no longer named by it, the idempotency record that answers it deleted, its hash
-- gone. The caller has taken it out of any queue, running or scheduled set its status puts it
-- in. Its output data is not touched: a data id whose job no longer exists is free again
-- (output.lua). `p` also holds tombstones.
local function forget_job(job, job_id, status, p)
  local f = redis.call('HMGET', job, 'data1_id', 'data2_id', 'function_id')
  count_names(named_data(f[1], f[2], f[3]), -1, p)
  local idem = redis.call('HGET', job, 'idem')
  if idem then
    local seen = redis.call('GET', idem)
    if seen and cjson.decode(seen).id == job_id then
      redis.call('DEL', idem)
    end
  end
  redis.call('ZREM', p.tombstones, job_id)
  set_status(job, job_id, status, nil, p)
  redis.call('DEL', job)
end
