#!lua
--[[ submit: create a pending job at the tail of its runtime's queue.

Invariant: a job id is written only where absent; a pending job sits in exactly one queue,
scored by a fresh enqueue sequence number, so every queue is FIFO and queues compare by age.
Checks come before the first write, so a refused call changes nothing.

KEYS[1] job hash to create
KEYS[2] queue of the job's runtime (sorted set)
KEYS[3] enqueue sequence counter
KEYS[4] data hash named by data1_id (ignored when ARGV[2] is "")
KEYS[5] data hash named by data2_id (ignored when ARGV[3] is "")
ARGV[1] job_id
ARGV[2] data1_id, or ""
ARGV[3] data2_id, or ""
ARGV[4] function_id
ARGV[5] runtime
ARGV[6] now, ms since the epoch
ARGV[7] wake channel of the runtime

Returns {"ok", seq} | {"id_taken"} | {"unknown_data", field}
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'id_taken'}
end
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[4]) == 0 then
  return {'unknown_data', 'data1_id'}
end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[5]) == 0 then
  return {'unknown_data', 'data2_id'}
end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1],
  'job_id', ARGV[1], 'data1_id', ARGV[2], 'data2_id', ARGV[3], 'function_id', ARGV[4],
  'runtime', ARGV[5], 'status', 'pending', 'seq', seq, 'attempts', 0,
  'created_at', ARGV[6], 'updated_at', ARGV[6])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('PUBLISH', ARGV[7], ARGV[1])
return {'ok', seq}
