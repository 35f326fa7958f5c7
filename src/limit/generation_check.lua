-- After generation.lua: only the generation check, for instances that have
-- counts in the windows but no request to send (they must notice a reset
-- too, and re-seed before the new generation settles).
-- KEYS[1]: the generation key. ARGV: [1] the caller's generation, [2] the id
-- of a new one if one must be opened, [3] its settle time in ms, [4]
-- optional, tests only: the time in ms.
-- Answer: {'ok', id, now} or generation()'s answer.
local now_ms = clock(ARGV[4])
local stale, id = generation(now_ms, ARGV[1], ARGV[2], tonumber(ARGV[3]))
if stale then
  return stale
end
return {'ok', id, now_ms}
