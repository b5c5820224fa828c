#!lua
--[[ submit_batch: create many pending jobs (POST /jobs), each exactly as submit creates one.

Invariant: each job is created atomically by the submit transition (lib/create.lua) and
refused alone; the batch as a whole is one script, so Redis runs it without interleaving. The
queues of the runtimes that got a job are woken once each, not once per job: a woken claim that
leaves jobs behind wakes the next waiter. Replayed after a lost reply, every job recognises
itself (same id and created_at) and answers "ok" again; a batch sent again under the same
Idempotency-Key answers each job the first one made (each job has a key of its own).

KEYS[1] enqueue sequence counter
ARGV[1] now, ms since the epoch (every job's created_at)
ARGV[2] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[3] the jobs, JSON: a list of [job_id, data1_id, data2_id, function_id, runtime,
        max_attempts, timeout, idempotency record key or "", fingerprint or "", priority,
        due time in ms or "", ttl in seconds or "", after as JSON or "", callback_url or ""] (as submit's ARGV)
ARGV[4] how many runtimes the broker may know at once
ARGV[5] seconds an idempotency record is kept

Returns one answer per job, in order, each what submit returns: {"ok", job_id} | {"id_taken"}
      | {"unknown_data", field}
]]
-- @include status
-- @include wake
-- @include output
-- @include create
local now = ARGV[1]
local p = cjson.decode(ARGV[2])
p.now = now
local out, woken, g = {}, {}, gathered_writes()
for i, j in ipairs(cjson.decode(ARGV[3])) do
  local job_id, data1, data2, runtime = j[1], j[2], j[3], j[5]
  local k = {p.job .. job_id, p.queue .. runtime, KEYS[1], p.data .. data1, p.data .. data2,
    j[8]}
  local a = {job_id, data1, data2, j[4], runtime, now, '', j[6], j[7], j[9], ARGV[5], '', '',
    j[10], j[11], j[12], j[13], j[14]}
  local answer = create_job(k, a, p, g, ARGV[4])
  if answer[1] == 'ok' then
    woken[runtime] = true
  end
  out[i] = answer
end
write_gathered(g)
for runtime in pairs(woken) do
  wake_waiters(p, runtime, 'batch')
end
return out
