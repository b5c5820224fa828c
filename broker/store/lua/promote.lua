#!lua flags=allow-oom
--[[ promote: scheduled jobs whose time has come become pending, for the timer each broker
process keeps (store/schedule.py).

Invariant: a scheduled job leaves the scheduled set and joins its runtime's queue in one
step, at the tail of its priority, with a fresh sequence number (jobs due together queue in
due order), and a worker waiting on its runtime is woken. Several processes may promote at
once: each batch is one atomic step over what is due at that moment, and a job promoted by one
is simply not there for the next.

It runs when Redis is full (flags=allow-oom): it moves jobs between keys and adds nothing.

KEYS[1] scheduled jobs by due time (sorted set)
ARGV[1] now, ms since the epoch
ARGV[2] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[3] the most jobs to promote in this call

Returns {promoted, next_due}: how many became pending, and when the next scheduled job is due
(ms), or "" when none is scheduled
]]
-- @include schedule
local now = ARGV[1]
local p = cjson.decode(ARGV[2])
p.now, p.scheduled = now, KEYS[1]
local promoted = promote_scheduled(now, tonumber(ARGV[3]), p)
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {promoted, head[2] or ''}
