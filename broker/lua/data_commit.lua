#!lua
--[[ data_commit: record new content for an existing data id (PUT /data), just before its file
is renamed into place.

Invariant: only an existing id is filled or replaced; the metadata says ready with the new size
and checksum.

KEYS[1] data hash
ARGV[1] size in bytes
ARGV[2] sha256 of the content, hex
ARGV[3] now, ms since the epoch

Returns {"ok"} | {"not_found"}
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_found'}
end
redis.call('HSET', KEYS[1], 'state', 'ready', 'size', ARGV[1], 'sha256', ARGV[2],
  'updated_at', ARGV[3])
return {'ok'}
