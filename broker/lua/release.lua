#!lua
--[[ release: the worker holding a running job gives it back unfinished (running -> pending).

Invariant: only the holder releases; the job goes back to the head of its queue (its original
sequence number), keeps its attempt count, and is bound to no worker.

KEYS[1] job hash
KEYS[2] releasing worker's set of running job ids
ARGV[1] job_id
ARGV[2] worker_id of the releaser
ARGV[3] lease, or "" to judge by the worker id alone
ARGV[4] now, ms since the epoch
ARGV[5] queue key prefix
ARGV[6] wake channel prefix
ARGV[7..] field, value pairs the worker echoed back and may not change

Returns {"ok"} | {"not_found"} | {"lease_lost"} | {"cancelled"} | {"illegal", status}
      | {"locked", field, status}
]]
-- @include fields
-- @include requeue
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease')
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
  return {'illegal', status}
end
local changed = first_changed(job, 7)
if changed then
  return {'locked', changed, status}
end
redis.call('SREM', KEYS[2], ARGV[1])
requeue_at_head(job, ARGV[1], ARGV[4], ARGV[5], ARGV[6])
return {'ok'}
