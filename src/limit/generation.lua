-- The generation of the shared windows: which copy of them this is.
-- KEYS[1] is the generation key, a hash: `id` (random, chosen by the
-- instance that opened it), `replid` (the Redis replication id it was
-- opened under) and `until` (Unix ms before which no permit is granted).
-- A restart (with or without persistence), a FLUSHALL (the key is gone) or
-- a failover to a replica (a new replication id) opens a new generation:
-- the windows may have lost some or all of their counts, so every instance
-- adds back what it counted in the last window (reseed.lua) before any
-- permit is granted again.

-- Redis's clock, or the time a test passes.
local function clock(override)
  if override and override ~= '' then
    return tonumber(override)
  end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function replication_id()
  return string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
end

-- nil and the generation's id when `known` is the current, settled
-- generation (or the caller is new and adopts it); otherwise the answer to
-- return: {'gen', id} (re-seed into generation `id`, then call again) or
-- {'settling', id, until, now}.
-- `candidate`: the id of a new generation, if one must be opened. Nothing
-- is granted in it for `settle_ms`, while the instances add their counts
-- back: a new deployment cannot be told from a Redis that lost everything.
local function generation(now_ms, known, candidate, settle_ms)
  local replid = replication_id()
  local gen = redis.call('HMGET', KEYS[1], 'id', 'replid', 'until')
  if not gen[1] or gen[2] ~= replid then
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'id', candidate, 'replid', replid, 'until', now_ms + settle_ms)
    gen = {candidate, replid, now_ms + settle_ms}
  end
  if known ~= '' and gen[1] ~= known then
    return {'gen', gen[1]}
  end
  if now_ms < tonumber(gen[3]) then
    return {'settling', gen[1], tonumber(gen[3]), now_ms}
  end
  return nil, gen[1]
end
