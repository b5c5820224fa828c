#!lua
--[[ report_next: the worker holding a running job reports how it ended, and takes its next
jobs in the same step (PUT /job?next=N), as BullMQ's moveToFinished hands a worker its next
job: one round trip where there were two.

Invariant: the report is report.lua's, the claim claim.lua's, run one after the other in one
script, so an answer lost on the way loses no job: redis-py's resend of the same call (same
lease) finds the report already made (a repeated final report changes nothing) and answers the
jobs that lease already holds. A report refused (lease_lost, illegal, ...) takes nothing; a
report on a job cancelled meanwhile still takes the next.

KEYS[1] job hash
KEYS[2] reporting worker's set of running job ids
KEYS[3] data hash named by ARGV[5] (ignored when ARGV[5] is "")
KEYS[4] workers by the time they will be declared dead (sorted set)
KEYS[5] running jobs by time-limit deadline (sorted set)
KEYS[6] delayed retries by due time (sorted set)
KEYS[7] reporting worker's hash
ARGV[1] job_id
ARGV[2] worker_id of the reporter
ARGV[3] lease, or "" to judge by the worker id alone
ARGV[4] status: succeeded | failed
ARGV[5] data2_id to record as the job's output, or ""
ARGV[6] error text kept on a failed job, or ""
ARGV[7] now, ms since the epoch
ARGV[8] the reporter's new deadline, ms
ARGV[9] "1" to retry a failure later while attempts remain, else ""
ARGV[10] first retry backoff, ms (doubles per attempt)
ARGV[11] longest retry backoff, ms
ARGV[12] jitter: a random fraction in [0, 1)
ARGV[13] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[14] how long a lease lasts without a heartbeat, ms
ARGV[15] the lease for the jobs taken: a fresh random token for this request
ARGV[16] batch size for settling dead workers, overdue jobs and due retries
ARGV[17] how long the worker will wait if it takes nothing, ms (claim.lua's ARGV[7])
ARGV[18] how many jobs to take at most
ARGV[19] the longest gap between settles that is not an outage, ms
ARGV[20..] field, value pairs the worker echoed back and may not change

Returns {report, claim}: report as report.lua returns it; claim as claim.lua returns it, or
{} when the report was refused (anything but ok and cancelled).
]]
-- @include reportjob
-- @include take
local p = cjson.decode(ARGV[13])
p.now = ARGV[7]
local report_args = {unpack(ARGV, 1, 14)}
for i = 20, #ARGV do
  report_args[#report_args + 1] = ARGV[i]
end
local report = report_job(KEYS, report_args, p)
if report[1] ~= 'ok' and report[1] ~= 'cancelled' then
  return {report, {}}
end
local claim_keys = {KEYS[7], KEYS[2], KEYS[4], KEYS[5], KEYS[6]}
local claim_args = {ARGV[2], ARGV[7], ARGV[15], ARGV[8], '', ARGV[16], ARGV[17], ARGV[18],
  ARGV[14], ARGV[19]}
return {report, take_jobs(claim_keys, claim_args, p)}
