#!lua
--[[ data_create: record a new data id, either reserved (no content yet) or ready (its file is
about to be renamed into place).

Invariant: a data id is written only where absent. Under an Idempotency-Key, a repeated request
answers the id the first one made, and creates nothing; the key is recorded in the same step as
the data, so a crash never leaves one without the other. Replayed by redis-py after a lost
reply, it recognises its own data (same created_at and sha256) instead of answering id_taken.

KEYS[1] data hash to create
KEYS[2] idempotency record (ignored when ARGV[6] is "")
ARGV[1] data_id
ARGV[2] state: reserved | ready
ARGV[3] size in bytes
ARGV[4] sha256 of the content, hex ("" when reserved)
ARGV[5] now, ms since the epoch
ARGV[6] fingerprint of the request under its Idempotency-Key, or "" when it has none
ARGV[7] seconds the idempotency record is kept

Returns {"ok", data_id} (data_id is another's when the key was used before)
      | {"id_taken"} | {"idempotency_mismatch"}
]]
-- @include idempotency
local earlier = earlier_answer(KEYS[2], ARGV[6])
if earlier then
  return earlier
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local f = redis.call('HMGET', KEYS[1], 'created_at', 'sha256')
  if f[1] == ARGV[5] and f[2] == ARGV[4] then
    return {'ok', ARGV[1]}
  end
  return {'id_taken'}
end
redis.call('HSET', KEYS[1], 'data_id', ARGV[1], 'state', ARGV[2], 'size', ARGV[3],
  'sha256', ARGV[4], 'created_at', ARGV[5], 'updated_at', ARGV[5], 'jobs', 0,
  'counted', 1)
remember_answer(KEYS[2], ARGV[6], ARGV[1], ARGV[7])
return {'ok', ARGV[1]}
