#!lua flags=allow-oom
--[[ sweep: settle what time has decided, for the sweep each broker process runs every second:
the claim's settling, and also scheduled jobs that are due (store/schedule.py's timer queues
them on time; this catches any it missed), finished jobs whose retention is over, and the rest
of a long cascade of upstream failures (lib/deps.lua).

Invariant: the same as claim's settling step, which it shares; several processes may sweep at
once, since each batch is one atomic step over whatever is due at that moment.

It runs when Redis is full (flags=allow-oom): settling dead workers and expired jobs frees
memory.

KEYS[1] workers by the time they will be declared dead (sorted set)
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
KEYS[4] tombstones by the time they go (sorted set)
ARGV[1] now, ms since the epoch
ARGV[2] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[3] batch size of each kind
ARGV[4] the longest gap between settles that is not an outage, ms (settle.lua: absorb_outage)

Returns {dead_workers, overdue_jobs, promoted_retries, purged_tombstones, expired_leases,
  promoted_scheduled, expired_jobs, failed_downstream}
]]
-- @include status
-- @include wake
-- @include giveback
-- @include settle
-- @include schedule
-- @include deps
local now, batch = ARGV[1], tonumber(ARGV[3])
local p = cjson.decode(ARGV[2])
p.now = now
p.workers, p.deadlines, p.delayed, p.tombstones = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
absorb_outage(now, ARGV[4], p)
return {reap_dead_workers(now, batch, p), expire_overdue_jobs(now, batch, p),
  promote_due_retries(now, batch, p), purge_tombstones(now, batch, p),
  expire_leases(now, batch, p), promote_scheduled(now, batch, p),
  purge_expired_jobs(now, batch, p), run_cascade(now, batch, p)}
