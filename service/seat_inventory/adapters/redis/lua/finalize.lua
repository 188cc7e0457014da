-- Confirm, step 3: the booking is committed in SQL; mirror it. Idempotent.
-- ARGV[4] hold id, [5] booked seats csv
local hold = ARGV[4]
if not loaded() then return {'NOT_LOADED'} end
-- Only a claimed hold is mirrored. Once it is gone, the sale is in sold
-- already (an earlier finalize, or a reload from SQL, which the booking fence
-- makes see every commit), and a late, stalled finalize must not put back
-- seats a CancelBooking has freed since.
local holder, state, seats, _, _, principal = read_hold(hold)
if state ~= 'confirming' then return {'ALREADY'} end
local booked = {}
for _, seat in ipairs(split(ARGV[5])) do
  if redis.call('SADD', K_SOLD, seat) == 1 then booked[#booked + 1] = seat end
  local value = redis.call('GET', seat_key(seat))
  if value and parse_seat(value) == hold then
    redis.call('DEL', seat_key(seat))
    redis.call('ZREM', K_HELD, seat)
  end
end
redis.call('DEL', hold_key(hold))
redis.call('ZREM', K_DEADLINES, hold)
untrack(hold, principal, holder, seats)
append_feed('BOOKED', booked)
return {'OK'}
