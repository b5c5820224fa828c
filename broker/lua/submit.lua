#!lua
--[[ submit: create a pending job at the tail of its runtime's queue.

Invariant: a job id is written only where absent; a pending job sits in exactly one queue,
scored by a fresh enqueue sequence number, so every queue is FIFO and queues compare by age.
Checks come before the first write, so a refused call changes nothing. The job is listed
under its status and its runtime is known from then on. Under an
Idempotency-Key, a repeated request answers the job the first one made; replayed by redis-py
after a lost reply, it recognises its own job (same id and created_at) instead of failing.

KEYS[1] job hash to create
KEYS[2] queue of the job's runtime (sorted set)
KEYS[3] enqueue sequence counter
KEYS[4] data hash named by data1_id (ignored when ARGV[2] is "")
KEYS[5] data hash named by data2_id (ignored when ARGV[3] is "")
KEYS[6] idempotency record (ignored when ARGV[10] is "")
ARGV[1] job_id
ARGV[2] data1_id, or ""
ARGV[3] data2_id, or ""
ARGV[4] function_id
ARGV[5] runtime
ARGV[6] now, ms since the epoch
ARGV[7] wake channel of the runtime
ARGV[8] max_attempts
ARGV[9] timeout, seconds
ARGV[10] fingerprint of the request under its Idempotency-Key, or ""
ARGV[11] seconds the idempotency record is kept
ARGV[12] key prefixes and index keys, JSON (keys.py: Keys.prefixes)

Returns {"ok", job_id} | {"id_taken"} | {"unknown_data", field} | {"idempotency_mismatch"}
]]
if ARGV[10] ~= '' then
  local seen = redis.call('GET', KEYS[6])
  if seen then
    local record = cjson.decode(seen)
    if record.fingerprint ~= ARGV[10] then
      return {'idempotency_mismatch'}
    end
    return {'ok', record.id}
  end
end
-- @include status
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'created_at') == ARGV[6] then
    return {'ok', ARGV[1]}
  end
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
  'runtime', ARGV[5], 'n', seq, 'seq', seq, 'max_attempts', ARGV[8], 'timeout', ARGV[9],
  'created_at', ARGV[6])
local p = cjson.decode(ARGV[12])
set_status(KEYS[1], ARGV[1], nil, 'pending', p)
redis.call('SADD', p.runtimes, ARGV[5])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[6], cjson.encode({fingerprint = ARGV[10], id = ARGV[1]}),
    'EX', ARGV[11])
end
redis.call('PUBLISH', ARGV[7], ARGV[1])
return {'ok', ARGV[1]}
