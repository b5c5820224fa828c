-- Shared by the scripts that create under an Idempotency-Key (`-- @include idempotency`): the
-- key's record ({"fingerprint", "id"}, with a TTL) is written in the same step as what it
-- answers, so a crash never leaves one without the other.

-- What an earlier request under the key answered: {"ok", id}; {"idempotency_mismatch"} when
-- the key was used for another request; nil when the key is new, or no key was given
-- (`fingerprint` "").
local function earlier_answer(key, fingerprint)
  if fingerprint == '' then
    return nil
  end
  local seen = redis.call('GET', key)
  if not seen then
    return nil
  end
  local record = cjson.decode(seen)
  if record.fingerprint ~= fingerprint then
    return {'idempotency_mismatch'}
  end
  return {'ok', record.id}
end

-- Remember that the request with `fingerprint` made `id`, for `ttl` seconds.
local function remember_answer(key, fingerprint, id, ttl)
  if fingerprint ~= '' then
    redis.call('SET', key, cjson.encode({fingerprint = fingerprint, id = id}), 'EX', ttl)
  end
end
