#!lua flags=allow-oom
--[[ data_delete: forget a data id (DELETE /data); the caller then removes the file it named.

Invariant: the metadata goes in one step with the reading of the version it named, so the file
removed is the one the metadata last named, whatever a PUT did meanwhile (a PUT that switches
it afterwards finds no id and removes its own file). It frees memory, so it runs when Redis is
full too.

Jobs waiting on it fail, error upstream_failed (lib/deps.lua).

KEYS[1] data hash
ARGV[1] data_id
ARGV[2] now, ms since the epoch
ARGV[3] key prefixes, index keys and settings, JSON (keys.py: Keys.context)

Returns {"ok", state, version} (state reserved or ready; version "" for the file of a POST)
      | {"not_found"}
]]
-- @include deps
local f = redis.call('HMGET', KEYS[1], 'state', 'version')
if not f[1] then
  return {'not_found'}
end
redis.call('DEL', KEYS[1])
local p = cjson.decode(ARGV[3])
p.now = ARGV[2]
local waiters = data_waiters(p, ARGV[1])
if redis.call('EXISTS', waiters) == 1 then
  doom_waiters(waiters, 'data ' .. ARGV[1] .. ' deleted', p)
  run_cascade(ARGV[2], CASCADE_BATCH, p)
end
return {'ok', f[1], f[2] or ''}
