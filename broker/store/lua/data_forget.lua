#!lua flags=allow-oom
--[[ data_forget: the data sweep drops the metadata of a ready id whose file is gone (its
broker died between recording a commit and renaming the file into place).

Invariant: only metadata still as the sweep read it goes (state ready, same updated_at): a
commit or create since then sets a new updated_at before its rename, and is never undone.

It runs when Redis is full (flags=allow-oom): forgetting metadata frees memory.

KEYS[1] data hash
ARGV[1] updated_at the sweep read, ms since the epoch

Returns 1 when the metadata was deleted, else 0
]]
local f = redis.call('HMGET', KEYS[1], 'state', 'updated_at')
if f[1] == 'ready' and f[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
