-- Queue order (`-- @include queue`). A queue is a sorted set whose lowest score goes first.
-- The score is the job's enqueue sequence number less its priority times 2^44: a higher
-- priority always goes first, equal priorities in sequence order (FIFO), and a plain job
-- (priority 0) is scored by its sequence number alone. Scores stay integers below 2^53 (exact
-- in a double) for priorities from -100 to 100 and sequence numbers below 2^44.

local PRIORITY_STEP = 17592186044416  -- 2^44

local function queue_score(seq, priority)
  return tonumber(seq) - (tonumber(priority) or 0) * PRIORITY_STEP
end
