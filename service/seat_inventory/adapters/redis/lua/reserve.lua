-- Hold every requested seat or none.
-- KEYS[6] hold key, KEYS[7] idempotency key
-- ARGV[4] hold id, [5] holder, [6] ttl ms, [7] max lifetime ms,
--     [8] request fingerprint ('' = no request_id), [9] idempotency ttl ms,
--     [10] hold-record retention ms, [11] principal,
--     [12] most seats this holder may hold at once (0 = no limit), [13..] seat ids
local K_HOLD, K_IDEM = KEYS[6], KEYS[7]
local hold, holder = ARGV[4], ARGV[5]
local ttl, lifetime = tonumber(ARGV[6]), tonumber(ARGV[7])
local fingerprint = ARGV[8]
local principal, limit = ARGV[11], tonumber(ARGV[12])

if not loaded() then return {'NOT_LOADED'} end

if fingerprint ~= '' then
  local previous = redis.call('GET', K_IDEM)
  if previous then
    local prev_fp, prev_hold, prev_exp = string.match(previous, '^([^|]*)|([^|]*)|([^|]*)$')
    if prev_fp ~= fingerprint then return {'IDEMPOTENCY_MISMATCH'} end
    return {'OK', prev_hold, prev_exp, 'replay'}
  end
end

-- Every call has a hold id of its own, so a record under it means this very
-- call ran already and is here again: sent once more after its reply was
-- lost (a connection reset, a timeout). Answer what it answered then, not
-- that its seats are taken (by itself).
local ran = redis.call('HGET', K_HOLD, 'expires_at')
if ran then return {'OK', hold, ran, 'replay'} end

local seats = {}
for i = 13, #ARGV do seats[#seats + 1] = ARGV[i] end

local known = redis.call('SMISMEMBER', K_SEATS, unpack(seats))
local missing = {}
for i, is_member in ipairs(known) do
  if is_member == 0 then missing[#missing + 1] = seats[i] end
end
if #missing > 0 then return {'SEAT_NOT_FOUND', table.concat(missing, ',')} end

local sold = redis.call('SMISMEMBER', K_SOLD, unpack(seats))
local taken = {}
for i, seat in ipairs(seats) do
  if sold[i] == 1 or seat_live(redis.call('GET', seat_key(seat))) then
    taken[#taken + 1] = seat
  end
end
if #taken > 0 then return {'UNAVAILABLE', table.concat(taken, ',')} end

-- The seats this holder holds now: its holds that still count, each entry
-- carrying its seat count (an entry from before counts were kept: its hold's
-- record). Each hold has at least one seat, so this is bounded by the limit.
local K_HOLDER = holder_key(principal, holder)
if limit > 0 then
  local held = 0
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', K_HOLDER, '(' .. NOW, '+inf')) do
    local bar = string.find(other, '|', 1, true)
    if bar then
      held = held + tonumber(string.sub(other, bar + 1))
    else
      held = held + seat_count(redis.call('HGET', hold_key(other), 'seats'))
    end
  end
  if held + #seats > limit then return {'HOLD_LIMIT', tostring(held)} end
end

-- every check passed: only writes from here on (Lua has no rollback)
local exp = NOW + ttl
local value = hold .. '|' .. exp
for _, seat in ipairs(seats) do
  redis.call('SET', seat_key(seat), value, 'PX', ttl)
end
index_held(seats, exp)
local csv = table.concat(seats, ',')
redis.call('HSET', K_HOLD, 'holder', holder, 'principal', principal, 'seats', csv,
  'expires_at', exp, 'created_at', NOW, 'cap', NOW + lifetime, 'state', 'held')
redis.call('PEXPIRE', K_HOLD, lifetime + tonumber(ARGV[10]))
redis.call('ZADD', K_DEADLINES, exp, hold)
redis.call('ZREMRANGEBYSCORE', K_HOLDER, '-inf', NOW)  -- lapsed holds, not swept yet
redis.call('ZADD', K_HOLDER, exp, hold .. '|' .. #seats)
redis.call('PEXPIRE', K_HOLDER, lifetime + tonumber(ARGV[10]))
if fingerprint ~= '' then
  redis.call('SET', K_IDEM, fingerprint .. '|' .. hold .. '|' .. exp, 'PX', ARGV[9])
end
append_feed('HELD', seats)
return {'OK', hold, tostring(exp), 'new'}
