#!lua
--[[ data_commit: switch an existing data id to new content (PUT /data) whose file is already
in place under its own version's name; or, with ARGV[7], only check that such a write would be
accepted.

Invariant: only an existing id is filled or replaced; the metadata says ready with the new
size, checksum and version, so it always names a whole file. Replayed after a lost reply, it
answers the version it set itself as the one replaced, which the caller then keeps. Fencing: the output of a job (a hash with a `job_id` holder, recorded by the
claim) is written by a worker only while that worker still holds the job under that lease and
the job is running; a write without a worker id is a requester's and is not fenced. Every check
comes before the first write, so a refused call changes nothing.

KEYS[1] data hash
ARGV[1] size in bytes
ARGV[2] sha256 of the content, hex
ARGV[3] now, ms since the epoch
ARGV[4] worker_id of the writer, or "" for a requester's write
ARGV[5] lease of the writer, or "" to judge by the worker id alone
ARGV[6] job key prefix (a job's hash is prefix .. job_id)
ARGV[7] "check" to check only, writing nothing; "" to commit
ARGV[8] version of the new content: its file is <data_id>.<version>
ARGV[9] "1" when the writer may write only outputs of jobs it holds (a worker acting with its
        own credential), else ""
ARGV[10] key prefixes, index keys and settings, JSON (keys.py: Keys.context)

A requester's write fills the data: jobs waiting on it count it as done, and those left waiting
on nothing become pending in this same step (lib/deps.lua). A worker's write to a job's output
does not: that output counts once its job succeeds.

Returns {"ok", state, version} (what the id held before: reserved, or ready with the version of
        the file now replaced, "" for the file of a POST) | {"not_found"}
      | {"lease_lost", job_id} | {"cancelled", job_id} | {"not_output"}
]]
-- @include deps
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_found'}
end
local d = redis.call('HMGET', KEYS[1], 'job_id', 'worker_id', 'lease')
local job_id = d[1]
if ARGV[9] == '1' and not job_id then
  return {'not_output'}
end
if ARGV[4] ~= '' and job_id then
  if d[2] ~= ARGV[4] or (ARGV[5] ~= '' and d[3] ~= ARGV[5]) then
    return {'lease_lost', job_id}
  end
  local j = redis.call('HMGET', ARGV[6] .. job_id, 'status', 'worker_id', 'lease')
  if j[2] ~= d[2] or j[3] ~= d[3] then
    return {'lease_lost', job_id}
  end
  if j[1] == 'cancelled' then
    return {'cancelled', job_id}
  end
  if j[1] ~= 'running' then
    return {'lease_lost', job_id}
  end
end
if ARGV[7] == 'check' then
  return {'ok', '', ''}
end
local before = redis.call('HMGET', KEYS[1], 'state', 'version')
redis.call('HSET', KEYS[1], 'state', 'ready', 'size', ARGV[1], 'sha256', ARGV[2],
  'updated_at', ARGV[3], 'version', ARGV[8])
if ARGV[4] == '' then  -- a requester's write fills it: jobs waiting on it may go on
  local p = cjson.decode(ARGV[10])
  p.now = ARGV[3]
  redis.call('HSET', KEYS[1], 'filled', '1')
  release_waiters(data_waiters(p, redis.call('HGET', KEYS[1], 'data_id')), ARGV[3], p)
end
return {'ok', before[1], before[2] or ''}
