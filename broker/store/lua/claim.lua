#!lua
--[[ claim: hand the first pending jobs (one, or up to a count) among a worker's runtimes that
are not paused to that worker: the highest priority first, the oldest among equals.

Invariant: a job leaves its queue and becomes running, bound to exactly one worker and lease,
in one step; two claims never return the same job, and a job is never under two leases. The
caller counts as heard from. Before popping, a bounded batch of what time has decided is
settled: dead workers' jobs given back, overdue jobs timed out, jobs whose lease ran out
without a heartbeat given back, due retries queued again. Each job handed out holds a lease
that lasts ARGV[9] ms unless its worker's heartbeat renews it.
Replayed with the same lease (redis-py re-sends a command whose reply was lost), it answers
the job that lease already holds instead of taking a second one.

KEYS[1] worker hash
KEYS[2] worker's set of running job ids
KEYS[3] workers by the time they will be declared dead (sorted set)
KEYS[4] running jobs by time-limit deadline (sorted set)
KEYS[5] delayed retries by due time (sorted set)
ARGV[1] worker_id
ARGV[2] now, ms since the epoch
ARGV[3] lease: a fresh random token for this request
ARGV[4] the worker's new deadline when it gets a job, ms (now + worker timeout)
ARGV[5] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[6] batch size for settling dead workers, overdue jobs and due retries
ARGV[7] how long the worker will wait if this claim finds nothing, ms (0: it will not wait);
        it then counts as alive until ARGV[4] + this, and its runtimes are marked as waited on
        (wake.lua) for this long and a second more
ARGV[8] how many jobs to take at most; the i-th job after the first gets the lease ARGV[3].i
ARGV[9] how long a lease lasts without a heartbeat, ms
ARGV[10] the longest gap between settles that is not an outage, ms (settle.lua: absorb_outage)

Returns {"unknown_worker"}
      | {"empty", runtimes_json}
      | {"ok", runtimes_json, more, n, then for each of the n jobs: job_id, lease, data1_id,
         data2_id, function_id, runtime, attempts, timeout, max_attempts, created_at}
        where more is 1 when a queue of this worker's runtimes that are not paused still
        holds a job
]]
-- @include take
return take_jobs(KEYS, ARGV, cjson.decode(ARGV[5]))
