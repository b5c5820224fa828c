-- The fencing rule, shared by the scripts a worker writes a job through (`-- @include holder`).

-- Why this worker may not write the job, or nil when it holds it. `j` is the job's
-- HMGET status, worker_id, lease; `lease` "" judges by the worker id alone. A lease the broker
-- voided (the job was given back or failed for it) is gone even for the same worker.
local function refused_writer(j, worker_id, lease)
  if not j[1] then
    return {'not_found'}
  end
  if j[2] ~= worker_id or not j[3] or (lease ~= '' and j[3] ~= lease) then
    return {'lease_lost'}
  end
  if j[1] == 'cancelled' then
    return {'cancelled'}
  end
  return nil
end
