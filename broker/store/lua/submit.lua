#!lua
--[[ submit: create a pending job at the tail of its runtime's queue among its priority, or a
scheduled job that becomes pending when it is due.

Invariant: a job id is written only where absent; a pending job sits in exactly one queue,
scored by its priority and a fresh enqueue sequence number (lib/queue.lua), so every queue is
FIFO within a priority and queues compare by priority, then age; a scheduled job sits in the
scheduled set only, by its due time. A job whose inputs are not filled yet, or that runs after
jobs not succeeded yet, is `waiting` (lib/deps.lua): in no queue, in the waiters set of each
thing it waits on; one whose upstream already ended without success is created `failed`.
Checks come before the first write, so a refused call changes nothing. A data2_id becomes
this job's output, and may be no other's. The job is listed
under its status and its runtime is known from then on. Under an
Idempotency-Key, a repeated request answers the job the first one made; replayed by redis-py
after a lost reply, it recognises its own job (same id and created_at) instead of failing.

KEYS[1] job hash to create
KEYS[2] queue of the job's runtime (sorted set)
KEYS[3] enqueue sequence counter
KEYS[4] data hash named by data1_id (ignored when ARGV[2] is "")
KEYS[5] data hash named by data2_id (ignored when ARGV[3] is "")
KEYS[6] idempotency record (ignored when ARGV[10] is "")
ARGV[1] job_id
ARGV[2] data1_id, or ""
ARGV[3] data2_id, or ""
ARGV[4] function_id
ARGV[5] runtime
ARGV[6] now, ms since the epoch
ARGV[7] "1" to wake workers waiting on the runtime, or "" not to (a batch wakes once)
ARGV[8] max_attempts
ARGV[9] timeout, seconds
ARGV[10] fingerprint of the request under its Idempotency-Key, or ""
ARGV[11] seconds the idempotency record is kept
ARGV[12] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[13] how many runtimes the broker may know at once
ARGV[14] priority, an integer from -100 to 100 (0 for a plain job)
ARGV[15] when the job is due, ms since the epoch, or "" for now (a time not after ARGV[6]
         is now)
ARGV[16] the job's own retention once finished, seconds, or "" for the broker's
ARGV[17] the jobs it runs after, a JSON list of ids, or ""
ARGV[18] the URL its end is posted to (a webhook, lua/lib/events.lua), or ""

Returns {"ok", job_id} | {"id_taken"} | {"unknown_data", field} | {"idempotency_mismatch"}
      | {"output_taken", job_id}: data2_id is already another job's output
      | {"too_many_runtimes", limit}: the runtime is new and the broker knows ARGV[13] already
      | {"unknown_job", job_id}: a job named in ARGV[17] does not exist
]]
-- @include status
-- @include wake
-- @include output
-- @include deps
-- @include create
local p = cjson.decode(ARGV[12])
p.now = ARGV[6]
return create_job(KEYS, ARGV, p, nil, ARGV[13])
