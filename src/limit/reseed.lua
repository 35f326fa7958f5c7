-- After generation.lua. Adds one instance's counts back into the windows
-- after a new generation opened, at most once per instance and generation.
-- KEYS[1]: the generation key; KEYS[2]: this instance's marker for the
-- generation; KEYS[3..]: window keys.
-- ARGV: [1] the generation to seed into, [2] 'once' (a re-seed: refused if
-- the marker is set) or 'more' (local admissions Redis has not seen yet:
-- added as they are), [3] bucket width in ms, [4] buckets per window (B),
-- [5] optional, tests only: the time in ms (or ''), then one argument per
-- window key: "bucket:count bucket:count ...".
-- Answer: {'seeded', keys} or {'done', 0} (this instance already re-seeded
-- this generation), or {'gen', id}: the generation changed again.
--
-- A re-seed merges: what a bucket kept through the loss (all of it after a
-- restart with AOF, part of it on a replica that lagged, nothing after a
-- FLUSHALL) may already hold what the instances add back. So each bucket
-- ends up with max(what it kept, the sum of the re-seeds) (one more hash per
-- window and generation, `<key>:seeds:<generation>`, remembers both):
-- never less than what any live instance counted, never counted twice.
local now_ms = clock(ARGV[5])
local gen = redis.call('HMGET', KEYS[1], 'id', 'replid')
if gen[1] ~= ARGV[1] or gen[2] ~= replication_id() then
  return {'gen', gen[1] or ''}
end
local bucket_ms = tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
local once = ARGV[2] == 'once'
if once then
  local ttl = (buckets + 2) * bucket_ms
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then
    return {'done', 0}
  end
end
local first = math.floor(now_ms / bucket_ms) - buckets
local seeded = 0
for i = 3, #KEYS do
  local key = KEYS[i]
  local seeds = key .. ':seeds:' .. ARGV[1]
  local newest = -1
  for bucket, n in string.gmatch(ARGV[3 + i], '(%d+):(%d+)') do
    local number = tonumber(bucket)
    n = tonumber(n)
    if number >= first then
      local add = n
      if once then
        local kept = redis.call('HGET', seeds, 'kept:' .. bucket)
        if kept then
          kept = tonumber(kept)
        else
          kept = tonumber(redis.call('HGET', key, bucket) or 0)
          redis.call('HSET', seeds, 'kept:' .. bucket, kept)
        end
        local before = tonumber(redis.call('HGET', seeds, 'sum:' .. bucket) or 0)
        redis.call('HSET', seeds, 'sum:' .. bucket, before + n)
        add = math.max(kept, before + n) - math.max(kept, before)
      end
      if add > 0 then
        redis.call('HINCRBY', key, bucket, add)
      end
      if number > newest then newest = number end
    end
  end
  if newest >= 0 then
    seeded = seeded + 1
    -- Both live at least until this newest bucket leaves the window.
    local ttl = (newest + buckets + 1) * bucket_ms - now_ms
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
    if once then
      redis.call('PEXPIRE', seeds, ttl)
    end
  end
end
return {'seeded', seeded}
