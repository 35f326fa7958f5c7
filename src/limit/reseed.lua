-- After generation.lua. Adds one instance's counts back into the windows
-- of a new generation, at most once per instance and generation.
-- KEYS[1]: the generation key; KEYS[2]: this instance's marker for the
-- generation; KEYS[3..]: window keys (named `<KEYS[i]>:<generation>`).
-- ARGV: [1] the generation to seed into, [2] 'once' (a re-seed: refused if
-- the marker is set) or 'more' (local admissions Redis has not seen yet),
-- [3] bucket width in ms, [4] buckets per window (B), [5] optional, tests
-- only: the time in ms, then one argument per window key:
-- "bucket:count bucket:count ...".
-- Answer: {'seeded', keys} or {'done', 0} (this instance already re-seeded
-- this generation), or {'gen', id}: the generation changed again.
local now_ms = clock(ARGV[5])
local gen = redis.call('HMGET', KEYS[1], 'id', 'replid')
if gen[1] ~= ARGV[1] or gen[2] ~= replication_id() then
  return {'gen', gen[1] or ''}
end
local bucket_ms = tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
if ARGV[2] == 'once' then
  local ttl = (buckets + 2) * bucket_ms
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then
    return {'done', 0}
  end
end
local first = math.floor(now_ms / bucket_ms) - buckets
local seeded = 0
for i = 3, #KEYS do
  local key = KEYS[i] .. ':' .. ARGV[1]
  local newest = -1
  for bucket, n in string.gmatch(ARGV[3 + i], '(%d+):(%d+)') do
    bucket = tonumber(bucket)
    if bucket >= first then
      redis.call('HINCRBY', key, bucket, tonumber(n))
      if bucket > newest then newest = bucket end
    end
  end
  if newest >= 0 then
    seeded = seeded + 1
    -- The key lives at least until this newest bucket leaves the window.
    local ttl = (newest + buckets + 1) * bucket_ms - now_ms
    if redis.call('PTTL', KEYS[i] .. ':' .. ARGV[1]) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
return {'seeded', seeded}
