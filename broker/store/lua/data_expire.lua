#!lua flags=allow-oom
--[[ data_expire: BROKER_DATA_TTL removes a data id that has outlived it; the caller then
removes the file it named.

Invariant: only data that no job that still exists names (its `jobs` count is 0: it is
counted, lib/datarefs.lua, and nobody names it) and that nobody wrote since the sweep read it
(`updated_at` as read, older than the cutoff) goes, in one step with the reading of the version
it named. Data made before counting began is not marked `counted` and is kept. It frees memory, so it
runs when Redis is full too.

KEYS[1] data hash
ARGV[1] the updated_at the sweep read (ms since the epoch)
ARGV[2] the cutoff: data last written before it has outlived the TTL (ms since the epoch)

Returns {"ok", state, version} (what it removed; version "" for the file of a POST)
      | {"kept"}
]]
local f = redis.call('HMGET', KEYS[1], 'state', 'version', 'updated_at', 'jobs', 'counted')
if not f[1] or f[5] ~= '1' or f[4] ~= '0' or f[3] ~= ARGV[1]
    or tonumber(f[3]) >= tonumber(ARGV[2]) then
  return {'kept'}
end
redis.call('DEL', KEYS[1])
return {'ok', f[1], f[2] or ''}
