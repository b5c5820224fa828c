-- Every status change records one event (`record_event`, called by set_status in status.lua),
-- in the script that makes the change, so the history can never disagree with the job:
--   * XADD to the stream p.events, capped near p.events_max entries (MAXLEN ~): the live feed
--     (GET /events) and redis-cli's view, each entry the fields below;
--   * HSET of a field of the job's own hash, named e:<stream id>, so that it lives and dies
--     with the job (GET /job/events): event (when not the new status), from, to, worker,
--     attempt, time (ms after the stream id's), reason, tab-separated;
--   * for a job that ends (succeeded, failed, cancelled) with a callback_url, or any job when
--     p.webhook_url (BROKER_WEBHOOK_URL) is not "", XADD of the event's fields, its stream
--     id and both URLs to p.outbox, the stream the webhook pump reads with a consumer group
--     (broker/events/outbox.py): it is never trimmed, so a delivery to make is never lost
--     between this script and the rq queue.
-- An event's fields: job, runtime, event (created, deleted, expired, given_back, retried, or
-- the new status), from and to (statuses; "" for none), time (ms), worker (on a move into or
-- out of running, else ""), attempt and reason ("" where there is none).
-- A caller may set p.kind (the event's name, when it is not the new status) and p.why (a
-- short reason) just before set_status; record_event uses them once and clears them.

local MAX_REASON = 200
local HISTORY = 'e:'  -- a job's own history: a field of its hash per event (wire.py reads it)

local function record_event(job, job_id, old, new, runtime, p, error_text)
  local f = redis.call('HMGET', job, 'worker_id', 'attempts', 'callback_url')
  local kind = p.kind or (not old and 'created') or (not new and 'deleted') or new
  local worker = (old == 'running' or new == 'running') and f[1] or ''
  local reason = string.sub(p.why or error_text or '', 1, MAX_REASON)
  p.kind, p.why = nil, nil
  -- Every entry has the same fields, "" where one does not apply: a stream stores the field
  -- names once per node for entries that share them, and no table is built per event.
  local id = redis.call('XADD', p.events, 'MAXLEN', '~', p.events_max, '*', 'job', job_id,
    'runtime', runtime, 'event', kind, 'from', old or '', 'to', new or '', 'time', p.now,
    'worker', worker, 'attempt', f[2] or '', 'reason', reason)
  if not new then
    redis.call('DEL', p.log .. job_id)  -- its history goes with its hash
    return
  end
  -- Written short, so that a plain job's hash keeps Redis's compact encoding (every value
  -- under 64 bytes): the event's name only when it is not the new status, the time as its
  -- difference from the stream id's milliseconds.
  local shift = tonumber(p.now) - tonumber(string.match(id, '^%d+'))
  redis.call('HSET', job, HISTORY .. id, (kind == new and '' or kind) .. '\t' .. (old or '') ..
    '\t' .. new .. '\t' .. worker .. '\t' .. (f[2] or '') .. '\t' .. shift .. '\t' .. reason)
  if (new == 'succeeded' or new == 'failed' or new == 'cancelled')
      and (f[3] or p.webhook_url ~= '') then
    redis.call('XADD', p.outbox, '*', 'id', id, 'url', f[3] or '', 'all', p.webhook_url,
      'job', job_id, 'runtime', runtime, 'event', kind, 'from', old or '', 'to', new,
      'time', p.now, 'worker', worker, 'attempt', f[2] or '', 'reason', reason)
  end
end
