#!lua flags=allow-oom
--[[ release: the worker holding a running job gives it back unfinished (running -> pending).

Invariant: only the holder releases; the job goes back to the head of its queue (its original
sequence number), keeps its attempt count, and is bound to no worker. Give-backs are counted
(`givebacks`): the one past the limit fails the job instead, error `given_back`, so a job no
worker will finish cannot circle for ever.

It runs when Redis is full (flags=allow-oom): giving a job back moves it between keys and adds
nothing.

KEYS[1] job hash
KEYS[2] releasing worker's set of running job ids
KEYS[3] running jobs by time-limit deadline (sorted set)
ARGV[1] job_id
ARGV[2] worker_id of the releaser
ARGV[3] lease, or "" to judge by the worker id alone
ARGV[4] now, ms since the epoch
ARGV[5] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[6] how many give-backs a job may have; the next one fails it
ARGV[7..] field, value pairs the worker echoed back and may not change

Returns {"ok"} | {"not_found"} | {"lease_lost"} | {"cancelled"}
      | {"illegal", status} | {"locked", field, status}
]]
-- @include fields
-- @include holder
-- @include status
-- @include wake
-- @include giveback
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease')
local status = j[1]
local refused = refused_writer(j, ARGV[2], ARGV[3])
if refused then
  return refused
end
if status ~= 'running' then
  return {'illegal', status}
end
local changed = first_changed(job, ARGV, 7)
if changed then
  return {'locked', changed, status}
end
local p = cjson.decode(ARGV[5])
p.now = ARGV[4]
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local given = redis.call('HINCRBY', job, 'givebacks', 1)
if given > tonumber(ARGV[6]) then
  set_status(job, ARGV[1], 'running', 'failed', p, nil, nil, 'error',
    'given_back: its workers gave it back ' .. given .. ' times, more than the ' .. ARGV[6] ..
    ' allowed (BROKER_MAX_GIVEBACKS)', 'finished_at', ARGV[4], 'updated_at', ARGV[4])
  redis.call('HDEL', job, 'lease')
  job_ended(ARGV[1], redis.call('HGET', job, 'data2_id'), 'failed: given_back', ARGV[4], p)
  return {'ok'}
end
requeue_at_head(job, ARGV[1], ARGV[4], p, 'released')
return {'ok'}
