#!lua
--[[ data_create: record a new data id, either reserved (no content yet) or ready (its file is
about to be renamed into place).

Invariant: a data id is written only where absent.

KEYS[1] data hash to create
ARGV[1] data_id
ARGV[2] state: reserved | ready
ARGV[3] size in bytes
ARGV[4] sha256 of the content, hex ("" when reserved)
ARGV[5] now, ms since the epoch

Returns {"ok"} | {"id_taken"}
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'id_taken'}
end
redis.call('HSET', KEYS[1], 'data_id', ARGV[1], 'state', ARGV[2], 'size', ARGV[3],
  'sha256', ARGV[4], 'created_at', ARGV[5], 'updated_at', ARGV[5])
return {'ok'}
