-- Shared by the scripts that name a job's output (`-- @include output`): a data id is the
-- output (data2_id) of one job at most, recorded on the data as `output_of`, so two jobs never
-- fence each other out of the same file. A job that is deleted lets go of it by ceasing to
-- exist. `p` holds the job key prefix.

-- The other job that already owns `data_key` as its output, or nil when `job_id` may (a
-- record naming a job that no longer exists counts as free).
local function output_owner(data_key, job_id, p)
  local owner = redis.call('HGET', data_key, 'output_of')
  if owner and owner ~= job_id and redis.call('EXISTS', p.job .. owner) == 1 then
    return owner
  end
  return nil
end

local function take_output(data_key, job_id)
  redis.call('HSET', data_key, 'output_of', job_id)
end

-- Let go of `data_key` as `job_id`'s output (a data key of "" names nothing).
local function release_output(data_key, job_id)
  if redis.call('HGET', data_key, 'output_of') == job_id then
    redis.call('HDEL', data_key, 'output_of')
  end
end
