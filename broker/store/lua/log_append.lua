#!lua flags=allow-oom
--[[ log_append: the worker holding a running job adds a chunk to the job's live log.

Invariant: only the holder (same worker id and, when given, the current lease) of a running
job appends; the log keeps at most ARGV[4] bytes, the last ones (the oldest chunks dropped,
the first one kept cut to fit), and the job hash counts every byte ever appended (log_size) and
those kept (log_kept), so a reader knows where in the log each byte lies.

It runs when Redis is full (flags=allow-oom): the log is bounded, and a running job's last
words matter most then.

KEYS[1] job hash
KEYS[2] the job's log (list of chunks)
ARGV[1] worker_id of the writer
ARGV[2] lease, or "" to judge by the worker id alone
ARGV[3] the chunk (bytes, not empty)
ARGV[4] most bytes the log keeps (BROKER_LOG_MAX)
ARGV[5] the log channel, where the job id is published once appended
ARGV[6] job_id

Returns {"ok", log_size} | {"not_found"} | {"lease_lost"} | {"cancelled"} | {"illegal", status}
]]
-- @include holder
local job = KEYS[1]
local j = redis.call('HMGET', job, 'status', 'worker_id', 'lease')
local refused = refused_writer(j, ARGV[1], ARGV[2])
if refused then
  return refused
end
if j[1] ~= 'running' then
  return {'illegal', j[1]}
end
local chunk, max = ARGV[3], tonumber(ARGV[4])
if #chunk > max then
  chunk = string.sub(chunk, -max)
end
redis.call('RPUSH', KEYS[2], chunk)
local size = redis.call('HINCRBY', job, 'log_size', #ARGV[3])
local kept = redis.call('HINCRBY', job, 'log_kept', #chunk)
while kept > max do
  local first = redis.call('LINDEX', KEYS[2], 0)
  if kept - #first >= max then
    redis.call('LPOP', KEYS[2])
    kept = kept - #first
  else
    redis.call('LSET', KEYS[2], 0, string.sub(first, kept - max + 1))
    kept = max
  end
end
redis.call('HSET', job, 'log_kept', kept)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'ok', size}
