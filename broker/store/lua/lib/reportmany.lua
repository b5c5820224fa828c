-- Shared by report_batch and report_batch_next (`-- @include reportmany`).
-- @include reportjob
-- report_many(KEYS, ARGV, p) applies report_batch's reports (its KEYS and ARGV[1..8]), each
-- through report_job, their shared writes gathered and sent once; one answer per report.
local function report_many(keys, args, p)
  local out, g = {}, gathered_writes()
  for i, r in ipairs(cjson.decode(args[7])) do
    local job_id, output = r[1], r[4]
    local k = {p.job .. job_id, keys[5], p.data .. output, keys[1], keys[2], keys[3], ''}
    local a = {job_id, args[1], r[2], r[3], output, r[5], args[2], args[3], r[6], args[4],
      args[5], r[7], '', args[8]}
    out[i] = report_job(k, a, p, g)
  end
  write_gathered(g)
  return out
end
