#!lua
--[[ requeue: a requester edits a pending job, or sets a finished job back to pending to run it
again.

Invariant: a pending job sits in exactly one queue, the one of its current runtime. Editing a
pending job keeps its place (a runtime change moves it to the other queue under the same
sequence number; one waiting out a retry backoff stays in the delayed set); re-running a
finished job puts it at the tail with a fresh one and fresh counts of attempts and give-backs. A running job
is never touched here.

KEYS[1] job hash
KEYS[2] enqueue sequence counter
KEYS[3] data hash named by a new data1_id (ignored unless data1_id changes to a non-empty id)
KEYS[4] data hash named by a new data2_id (ignored unless data2_id changes to a non-empty id)
KEYS[5] tombstones by the time they go (sorted set)
ARGV[1] job_id
ARGV[2] now, ms since the epoch
ARGV[3] mode: "edit" (the job must stay as it is unless pending) | "rerun" (finished -> pending)
ARGV[4] key prefixes and index keys, JSON (keys.py: Keys.prefixes)
ARGV[5] how many runtimes the broker may know at once
ARGV[6..] field, value pairs to set, among data1_id, data2_id, function_id, runtime

Returns {"ok"} | {"not_found"} | {"illegal", status} | {"locked", field, status}
      | {"unknown_data", field} | {"output_taken", job_id} | {"too_many_runtimes", limit}
]]
-- @include fields
-- @include status
-- @include wake
-- @include output
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'runtime', 'seq', 'data1_id', 'data2_id')
local status = j[1]
if not status then
  return {'not_found'}
end
local changed = first_changed(job, ARGV, 6)
if status == 'running' then
  if ARGV[3] == 'edit' and not changed then
    return {'ok'}
  end
  if ARGV[3] == 'edit' then
    return {'locked', changed, status}
  end
  return {'illegal', status}
end
if status ~= 'pending' and ARGV[3] == 'edit' then
  if changed then
    return {'locked', changed, status}
  end
  return {'ok'}
end

local new = {}
for i = 6, #ARGV, 2 do
  new[ARGV[i]] = ARGV[i + 1]
end
if new.data1_id and new.data1_id ~= '' and new.data1_id ~= j[4]
    and redis.call('EXISTS', KEYS[3]) == 0 then
  return {'unknown_data', 'data1_id'}
end
if new.data2_id and new.data2_id ~= '' and new.data2_id ~= j[5]
    and redis.call('EXISTS', KEYS[4]) == 0 then
  return {'unknown_data', 'data2_id'}
end

local p = cjson.decode(ARGV[4])
local runtime = new.runtime or j[2]
if runtime ~= j[2] and not runtimes_fit({runtime}, ARGV[5], p) then
  return {'too_many_runtimes', ARGV[5]}
end
local new_output = new.data2_id and new.data2_id ~= j[5] and new.data2_id ~= ''
local owner = new_output and output_owner(KEYS[4], ARGV[1], p)
if owner then
  return {'output_taken', owner}
end
if new.data2_id and new.data2_id ~= j[5] then
  if j[5] and j[5] ~= '' then
    release_output(p.data .. j[5], ARGV[1])
  end
  if new_output then
    take_output(KEYS[4], ARGV[1])
  end
end
local now = ARGV[2]
for i = 6, #ARGV, 2 do
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', job, 'updated_at', now)
if runtime ~= j[2] then
  name_runtime(runtime, p)
  unname_runtime(j[2], p)
end
if status == 'pending' then
  if runtime ~= j[2] and redis.call('ZREM', p.queue .. j[2], ARGV[1]) == 1 then
    redis.call('ZADD', p.queue .. runtime, j[3], ARGV[1])
    wake_waiters(p, runtime, ARGV[1])
  end
  return {'ok'}
end
local seq = redis.call('INCR', KEYS[2])
set_status(job, ARGV[1], status, 'pending', p)
redis.call('HSET', job, 'seq', seq, 'attempts', 0, 'givebacks', 0)
redis.call('HDEL', job, 'worker_id', 'lease', 'started_at', 'finished_at', 'error', 'retry_at')
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', p.queue .. runtime, seq, ARGV[1])
wake_waiters(p, runtime, ARGV[1])
return {'ok'}
