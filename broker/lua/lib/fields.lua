-- Shared by the job scripts (inlined where a script says `-- @include fields`).

-- The first field among ARGV[from..] (name, value pairs) whose value differs from the job's,
-- or nil when the caller only echoed what the job already holds.
local function first_changed(job, from)
  for i = from, #ARGV, 2 do
    if redis.call('HGET', job, ARGV[i]) ~= ARGV[i + 1] then
      return ARGV[i]
    end
  end
  return nil
end
