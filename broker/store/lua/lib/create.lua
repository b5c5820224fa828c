-- Shared by submit and submit_batch (`-- @include create`).
-- @include status
-- @include wake
-- @include output
-- @include idempotency
-- @include queue
-- @include schedule
-- @include deps
-- @include datarefs
-- create_job(k, a, p, g, max_runtimes) is the submit transition: `k` and `a` are submit.lua's
-- KEYS and ARGV (a[7] may be "" to wake nobody: a batch wakes once per runtime), `p` the
-- decoded key prefixes, `g` a batch's gathered writes (status.lua) or nil to write at once,
-- `max_runtimes` how many runtimes the broker may know. It answers what submit.lua returns.
local function create_job(k, a, p, g, max_runtimes)
  local earlier = earlier_answer(k[6], a[10])
  if earlier then
    return earlier
  end
  if redis.call('EXISTS', k[1]) == 1 then
    if redis.call('HGET', k[1], 'created_at') == a[6] then
      return {'ok', a[1]}
    end
    return {'id_taken'}
  end
  local inputs, states = input_ids(a[2], a[4]), {}
  for i, data_id in ipairs(inputs) do
    states[i] = {data_state(data_id, p)}
  end
  if a[2] ~= '' and states[1][1] == 'missing' then
    return {'unknown_data', 'data1_id'}
  end
  if a[3] ~= '' and redis.call('EXISTS', k[5]) == 0 then
    return {'unknown_data', 'data2_id'}
  end
  local owner = a[3] ~= '' and output_owner(k[5], a[1], p)
  if owner then
    return {'output_taken', owner}
  end
  if not runtimes_fit({a[5]}, max_runtimes, p) then
    return {'too_many_runtimes', max_runtimes}
  end
  local after = a[17] ~= '' and cjson.decode(a[17]) or {}
  for _, upstream in ipairs(after) do
    if redis.call('EXISTS', p.job .. upstream) == 0 then
      return {'unknown_job', upstream}
    end
  end
  local blockers, cause = blockers_of(inputs, after, true, p, states)
  local seq = redis.call('INCR', k[3])
  local due = tonumber(a[15])
  local status = (due and due > tonumber(a[6])) and 'scheduled' or 'pending'
  if cause then
    status = 'failed'
  elseif #blockers > 0 then
    status = 'waiting'
  end
  local fields = {'data1_id', a[2], 'data2_id', a[3], 'function_id', a[4],
    'runtime', a[5], 'n', seq, 'seq', seq, 'max_attempts', a[8], 'timeout', a[9],
    'created_at', a[6]}
  if tonumber(a[14]) ~= 0 then  -- a plain job keeps no priority field (memory): 0
    table.insert(fields, 'priority')
    table.insert(fields, a[14])
  end
  if due then
    table.insert(fields, 'run_at')
    table.insert(fields, a[15])
  end
  if a[16] ~= '' then
    table.insert(fields, 'ttl')
    table.insert(fields, a[16])
  end
  if a[10] ~= '' then
    table.insert(fields, 'idem')
    table.insert(fields, k[6])
  end
  if #after > 0 then
    table.insert(fields, 'after')
    table.insert(fields, a[17])
  end
  if a[18] ~= '' then
    table.insert(fields, 'callback_url')
    table.insert(fields, a[18])
  end
  if cause then
    for _, v in ipairs({'error', 'upstream_failed: ' .. cause, 'finished_at', a[6]}) do
      table.insert(fields, v)
    end
  end
  set_status(k[1], a[1], nil, status, p, {seq, a[5]}, g, unpack(fields))
  if a[3] ~= '' then
    take_output(k[5], a[1])
  end
  name_runtime(a[5], p, g)
  local existing = {}  -- the data it names, each once: its inputs that exist, its output
  for i, data_id in ipairs(inputs) do
    if states[i][1] ~= 'missing' then
      table.insert(existing, data_id)
    end
  end
  count_new_names(named_data(existing[1], a[3], existing[2]), p)
  remember_answer(k[6], a[10], a[1], a[11])
  if status == 'waiting' then
    wait_on(k[1], a[1], blockers)
    return {'ok', a[1]}
  elseif status == 'failed' then
    return {'ok', a[1]}
  elseif status == 'scheduled' then
    schedule_job(a[1], due, p)
    return {'ok', a[1]}
  end
  gather(g, 'ZADD', k[2], a[1], queue_score(seq, a[14]))
  if a[7] ~= '' then
    wake_waiters(p, a[5], a[1])
  end
  return {'ok', a[1]}
end
