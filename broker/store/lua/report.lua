#!lua flags=allow-oom
--[[ report: the worker holding a running job reports on it: a heartbeat, its output id, its
outcome, or a failure to retry later.

Invariant: only the holder (same worker id and, when given, the current lease) changes the job;
a job leaves `running` once, and repeating the same final report changes nothing. Any report
from a known worker counts as hearing from it; a report that the job is still running renews
its lease. A failure reported with retry waits out an
exponential backoff in the delayed set while attempts remain, and fails for good after.

It runs when Redis is full (flags=allow-oom): a running job must be able to finish, and its
report adds only bounded fields.

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
ARGV[4] status: running | succeeded | failed
ARGV[5] data2_id to record as the job's output, or ""
ARGV[6] error text kept on a failed job, or ""
ARGV[7] now, ms since the epoch
ARGV[8] the reporter's new deadline, ms
ARGV[9] "1" to retry a failure later while attempts remain, else ""
ARGV[10] first retry backoff, ms (doubles per attempt)
ARGV[11] longest retry backoff, ms
ARGV[12] jitter: a random fraction in [0, 1)
ARGV[13] key prefixes, index keys and settings, JSON (keys.py: Keys.context)
ARGV[14] how long the job's lease lasts from this report when it says running, ms
ARGV[15..] field, value pairs the worker echoed back and may not change

Returns {"ok", started_at} | {"not_found"} | {"lease_lost"} | {"cancelled"} | {"illegal", status}
      | {"locked", field, status} | {"unknown_data", "data2_id"}
      | {"output_taken", job_id}: the data2_id reported is another job's output
]]
-- @include fields
-- @include holder
-- @include status
-- @include output
-- @include reportjob
local p = cjson.decode(ARGV[13])
p.now = ARGV[7]
return report_job(KEYS, ARGV, p)
