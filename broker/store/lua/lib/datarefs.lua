-- How many jobs name each data file (`-- @include datarefs`), so that BROKER_DATA_TTL never
-- removes data a job that still exists names. Each data hash holds the count in `jobs`; one
-- made by this version also holds `counted` (its count is whole, from 0), and only such data
-- is ever expired (data_expire.lua): one made before may be named by jobs nobody counted.
-- `p` holds the data key prefix.

-- The data ids a job names (data1_id, data2_id, function_id shaped like an id), each once.
local function named_data(data1_id, data2_id, function_id)
  local out, seen = {}, {}
  for _, id in ipairs({data1_id or '', data2_id or '', function_id or ''}) do
    if #id == 8 and not seen[id] then
      seen[id] = true
      table.insert(out, id)
    end
  end
  return out
end

-- `by` more (or fewer) jobs name each of `data_ids`, where that data exists.
local function count_names(data_ids, by, p)
  for _, id in ipairs(data_ids) do
    local key = p.data .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HINCRBY', key, 'jobs', by)
    end
  end
end

-- One more job names each of `data_ids`, which the caller knows exist (one call each).
local function count_new_names(data_ids, p)
  for _, id in ipairs(data_ids) do
    redis.call('HINCRBY', p.data .. id, 'jobs', 1)
  end
end

-- A job's names move from the `old` ids to the `new` ones (named_data lists).
local function recount_names(old, new, p)
  local in_old, in_new, gone, came = {}, {}, {}, {}
  for _, id in ipairs(old) do in_old[id] = true end
  for _, id in ipairs(new) do in_new[id] = true end
  for _, id in ipairs(old) do
    if not in_new[id] then table.insert(gone, id) end
  end
  for _, id in ipairs(new) do
    if not in_old[id] then table.insert(came, id) end
  end
  count_names(gone, -1, p)
  count_names(came, 1, p)
end
