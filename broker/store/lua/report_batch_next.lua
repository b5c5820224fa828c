#!lua
--[[ report_batch_next: one worker reports on many jobs (PUT /jobs?next=N), each exactly as
report_batch does, and takes its next jobs in the same step, as claim does.

Invariant: the reports are report_batch's, the claim claim.lua's (lib/take.lua), one after the
other in one script: a resent call (same lease) finds the reports made (repeating them changes
nothing) and answers the jobs that lease already holds.

KEYS[1] workers by the time they will be declared dead (sorted set)
KEYS[2] running jobs by time-limit deadline (sorted set)
KEYS[3] delayed retries by due time (sorted set)
KEYS[4] reporting worker's hash
KEYS[5] reporting worker's set of running job ids
ARGV[1] worker_id of the reporter
ARGV[2] now, ms since the epoch
ARGV[3] the reporter's new deadline, ms
ARGV[4] first retry backoff, ms (doubles per attempt)
ARGV[5] longest retry backoff, ms
ARGV[6] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[7] the reports, JSON, as report_batch takes them
ARGV[8] how long a lease lasts without a heartbeat, ms
ARGV[9] the lease for the jobs taken: a fresh random token for this request
ARGV[10] batch size for settling dead workers, overdue jobs and due retries
ARGV[11] how long the worker will wait if it takes nothing, ms (claim.lua's ARGV[7])
ARGV[12] how many jobs to take at most
ARGV[13] the longest gap between settles that is not an outage, ms

Returns {reports, claim}: one answer per report, in order, each what report returns; and the
claim as claim.lua returns it.
]]
-- @include reportmany
-- @include take
local p = cjson.decode(ARGV[6])
p.now = ARGV[2]
local out = report_many(KEYS, ARGV, p)
-- The claim hears from the worker (last_seen, its deadline) as report_batch does.
return {out, take_jobs({KEYS[4], KEYS[5], KEYS[1], KEYS[2], KEYS[3]},
  {ARGV[1], ARGV[2], ARGV[9], ARGV[3], '', ARGV[10], ARGV[11], ARGV[12], ARGV[8], ARGV[13]},
  p)}
