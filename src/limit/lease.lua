-- After generation.lua (its functions, and KEYS[1]: the generation key).
-- KEYS[2]: the token's buckets (hash: bucket number -> count);
-- KEYS[3], optional: the account's buckets, a second window shared by all
-- of the account's tokens.
-- ARGV: [1] token limit, [2] bucket width in ms, [3] buckets per window (B),
-- [4] account limit (0 without an account), [5] permits asked,
-- [6] lease ttl in ms, [7] bucket and [8] count of permits given back,
-- [9] the caller's generation ('' when it knows none yet), [10] the id of
-- a new generation if one must be opened, [11] its settle time in ms,
-- [12] optional, tests only: the time in ms instead of Redis's TIME.
-- Answer: {'ok', generation, permits, record, now, remaining, reset
-- [, account remaining, account reset]}, or generation()'s answer.
local bucket_ms = tonumber(ARGV[2])
local buckets = tonumber(ARGV[3])
local now_ms = clock(ARGV[12])
local stale_generation, current_generation =
  generation(now_ms, ARGV[9], ARGV[10], tonumber(ARGV[11]))
if stale_generation then
  return stale_generation
end
local token_key = KEYS[2]
local current = math.floor(now_ms / bucket_ms)
local first = current - buckets
-- Granted permits count in the bucket of the lease's end, so each one
-- stays in the window at least as long as the request it admits.
local record = math.floor((now_ms + tonumber(ARGV[6])) / bucket_ms)
local give_back = tonumber(ARGV[8])

-- A window as it stands now (after the give-back): counted buckets, sum.
local function load(key)
  if give_back > 0 and tonumber(ARGV[7]) >= first then
    local held = tonumber(redis.call('HGET', key, ARGV[7]) or 0)
    local n = math.min(held, give_back)
    if n > 0 and n == held then
      redis.call('HDEL', key, ARGV[7])
    elseif n > 0 then
      redis.call('HINCRBY', key, ARGV[7], -n)
    end
  end
  local fields = redis.call('HGETALL', key)
  local w = {counts = {}, order = {}, sum = 0}
  local stale = {}
  for i = 1, #fields, 2 do
    local bucket = tonumber(fields[i])
    local count = tonumber(fields[i + 1])
    if bucket < first then
      stale[#stale + 1] = fields[i]
    else
      w.counts[bucket] = count
      w.order[#w.order + 1] = bucket
      w.sum = w.sum + count
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  return w
end

local function count(key, w, permits)
  redis.call('HINCRBY', key, record, permits)
  if w.counts[record] == nil then
    w.counts[record] = 0
    w.order[#w.order + 1] = record
  end
  w.counts[record] = w.counts[record] + permits
  w.sum = w.sum + permits
  local newest = record
  for _, bucket in ipairs(w.order) do
    if bucket > newest then newest = bucket end
  end
  -- The key lives until its newest bucket leaves the window.
  redis.call('PEXPIRE', key, (newest + buckets + 1) * bucket_ms - now_ms)
end

-- When `Remaining` next grows: as WindowState::decision computes it.
local function reset(w, limit)
  local reset_ms = now_ms + buckets * bucket_ms
  if w.sum > 0 and limit > 0 then
    table.sort(w.order)
    local leaving = 0
    for _, bucket in ipairs(w.order) do
      leaving = leaving + w.counts[bucket]
      if w.sum < limit or w.sum - leaving < limit then
        reset_ms = (bucket + buckets + 1) * bucket_ms
        break
      end
    end
  end
  return reset_ms
end

local function remaining(w, limit)
  local left = limit - w.sum
  if left < 0 then left = 0 end
  return left
end

local token_limit = tonumber(ARGV[1])
local token = load(token_key)
local permits = math.min(tonumber(ARGV[5]), token_limit - token.sum)
local account, account_limit
local account_key
if #KEYS > 2 then
  account_key = KEYS[3]
  account_limit = tonumber(ARGV[4])
  account = load(account_key)
  permits = math.min(permits, account_limit - account.sum)
end
if permits < 0 then permits = 0 end
if permits > 0 then
  count(token_key, token, permits)
  if account then count(account_key, account, permits) end
end
local answer = {'ok', current_generation, permits, record, now_ms,
  remaining(token, token_limit), reset(token, token_limit)}
if account then
  answer[8] = remaining(account, account_limit)
  answer[9] = reset(account, account_limit)
end
return answer
