#!lua flags=allow-oom
--[[ data_delete: forget a data id (DELETE /data); the caller then removes the file it named.

Invariant: the metadata goes in one step with the reading of the version it named, so the file
removed is the one the metadata last named, whatever a PUT did meanwhile (a PUT that switches
it afterwards finds no id and removes its own file). It frees memory, so it runs when Redis is
full too.

KEYS[1] data hash

Returns {"ok", state, version} (state reserved or ready; version "" for the file of a POST)
      | {"not_found"}
]]
local f = redis.call('HMGET', KEYS[1], 'state', 'version')
if not f[1] then
  return {'not_found'}
end
redis.call('DEL', KEYS[1])
return {'ok', f[1], f[2] or ''}
