#!lua
--[[ report: the worker holding a running job reports on it: progress, output id, or outcome.

Invariant: only the holder (same worker id and, when given, the current lease) changes the job;
a job leaves `running` once, and repeating the same final report changes nothing.

KEYS[1] job hash
KEYS[2] reporting worker's set of running job ids
KEYS[3] data hash named by ARGV[5] (ignored when ARGV[5] is "")
ARGV[1] job_id
ARGV[2] worker_id of the reporter
ARGV[3] lease, or "" to judge by the worker id alone
ARGV[4] status: running | succeeded | failed
ARGV[5] data2_id to record as the job's output, or ""
ARGV[6] error text kept on a failed job, or ""
ARGV[7] now, ms since the epoch
ARGV[8..] field, value pairs the worker echoed back and may not change

Returns {"ok"} | {"not_found"} | {"lease_lost"} | {"cancelled"} | {"illegal", status}
      | {"locked", field, status} | {"unknown_data", "data2_id"}
]]
-- @include fields
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease', 'data2_id')
local status = j[1]
if not status then
  return {'not_found'}
end
if j[2] ~= ARGV[2] or (ARGV[3] ~= '' and j[3] ~= ARGV[3]) then
  return {'lease_lost'}
end
if status == 'cancelled' then
  return {'cancelled'}
end
if status ~= 'running' then
  if status == ARGV[4] then
    return {'ok'}
  end
  return {'illegal', status}
end
local changed = first_changed(job, 8)
if changed then
  return {'locked', changed, status}
end
local output = ARGV[5]
if output ~= '' and output ~= j[4] then
  if j[4] ~= '' then
    return {'locked', 'data2_id', status}
  end
  if redis.call('EXISTS', KEYS[3]) == 0 then
    return {'unknown_data', 'data2_id'}
  end
  redis.call('HSET', job, 'data2_id', output)
end
redis.call('HSET', job, 'updated_at', ARGV[7])
if ARGV[4] ~= 'running' then
  redis.call('HSET', job, 'status', ARGV[4], 'finished_at', ARGV[7])
  if ARGV[4] == 'failed' and ARGV[6] ~= '' then
    redis.call('HSET', job, 'error', ARGV[6])
  end
  redis.call('SREM', KEYS[2], ARGV[1])
end
return {'ok'}
