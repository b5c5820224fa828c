#!lua flags=allow-oom
--[[ report_batch: one worker reports on many jobs (PUT /jobs), each exactly as report does.

Invariant: each report is applied atomically by the report transition (lib/reportjob.lua) and
refused alone; the batch is one script, so Redis runs it without interleaving. Repeating the
same final reports changes nothing, so a replay after a lost reply is harmless.

It runs when Redis is full (flags=allow-oom): running jobs must be able to finish, and reports
add only bounded fields.

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
ARGV[7] the reports, JSON: a list of [job_id, lease or "", status, data2_id or "", error or "",
        "1" to retry or "", jitter in [0, 1)]
ARGV[8] how long a job's lease lasts from a report that it is running, ms

Returns one answer per report, in order, each what report returns.
]]
-- @include reportmany
local p = cjson.decode(ARGV[6])
p.now = ARGV[2]
if redis.call('EXISTS', KEYS[4]) == 1 then  -- the reporter is heard from, once per batch
  redis.call('HSET', KEYS[4], 'last_seen', ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return report_many(KEYS, ARGV, p)
