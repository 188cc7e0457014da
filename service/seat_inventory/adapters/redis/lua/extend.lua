-- Move a live hold's expiry to min(now + ttl, its lifetime cap).
-- KEYS[6] hold key. ARGV[4] hold id, [5] holder, [6] ttl ms, [7] principal
local hold = ARGV[4]
local h, err = owned_live_hold(hold, ARGV[5], ARGV[7])
if not h then return err end
if h.state == 'released' then return {'NOT_FOUND'} end
if h.state == 'confirming' then return {'CONFIRMING'} end

local seats = split(h.seats)
if not seats_still_mine(hold, seats) then return {'NOT_FOUND'} end
local exp = math.min(NOW + tonumber(ARGV[6]), h.cap)
local value = hold .. '|' .. exp
for _, seat in ipairs(seats) do
  redis.call('SET', seat_key(seat), value, 'PX', exp - NOW)
end
index_held(seats, exp)
redis.call('HSET', KEYS[6], 'expires_at', exp)
redis.call('ZADD', K_DEADLINES, exp, hold)
retrack(h.principal, h.owner, hold, h.seats, exp)  -- counts until then
return {'OK', h.seats, tostring(exp)}
