-- wrk script: every request carries a fresh, well-formed token (valid CRC-32)
-- that no server knows. With TOKEN_ID set, every token reuses that id with a
-- random wrong secret (a flood against one known token id).
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local prefix = os.getenv("TOKEN_PREFIX") or "iit_"
local fixed_id = os.getenv("TOKEN_ID")
local path = os.getenv("TARGET_PATH") or "/api/v1/external_tests/providers"

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) == 1 then
      c = bit.bxor(bit.rshift(c, 1), 0xEDB88320)
    else
      c = bit.rshift(c, 1)
    end
  end
  crc_table[i] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(bit.rshift(c, 8), crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)])
  end
  return bit.bxor(c, 0xFFFFFFFF)
end

local function random_chars(n)
  local out = {}
  for i = 1, n do
    local k = math.random(1, 64)
    out[i] = alphabet:sub(k, k)
  end
  return table.concat(out)
end

local function encode_crc(c)
  local out = {}
  local shifts = {26, 20, 14, 8, 2}
  for i, s in ipairs(shifts) do
    local k = bit.band(bit.rshift(c, s), 63) + 1
    out[i] = alphabet:sub(k, k)
  end
  local k = bit.lshift(bit.band(c, 3), 4) + 1
  out[6] = alphabet:sub(k, k)
  return table.concat(out)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function request()
  local body = prefix .. (fixed_id or random_chars(20)) .. random_chars(44)
  local token = body .. encode_crc(crc32(body))
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
