-- Confirm, step 3: the booking is committed in SQL; mirror it. Idempotent:
-- seats already in sold are not reported again.
-- ARGV[4] hold id, [5] booked seats csv
local hold = ARGV[4]
if not loaded() then return {'NOT_LOADED'} end
local booked = {}
for _, seat in ipairs(split(ARGV[5])) do
  if redis.call('SADD', K_SOLD, seat) == 1 then booked[#booked + 1] = seat end
  local value = redis.call('GET', seat_key(seat))
  if value and parse_seat(value) == hold then redis.call('DEL', seat_key(seat)) end
end
redis.call('DEL', hold_key(hold))
redis.call('ZREM', K_DEADLINES, hold)
append_feed('BOOKED', booked)
return {'OK'}
