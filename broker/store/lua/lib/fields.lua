-- Shared by the job scripts (inlined where a script says `-- @include fields`).

-- What a job holds for a field it keeps no value of (a plain job keeps no priority: memory).
local FIELD_DEFAULTS = {priority = '0'}

-- The first field among args[from..] (name, value pairs; args is a script's ARGV or a table
-- shaped like it) whose value differs from the job's, or nil when the caller only echoed what
-- the job already holds.
local function first_changed(job, args, from)
  for i = from, #args, 2 do
    local held = redis.call('HGET', job, args[i]) or FIELD_DEFAULTS[args[i]]
    if held ~= args[i + 1] then
      return args[i]
    end
  end
  return nil
end
