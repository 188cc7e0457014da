-- Give up a confirming hold that SQL did not book (repair, or a seat conflict
-- found by the database). ARGV[4] hold id, [5] seats SQL says are sold by
-- someone else (csv, may be empty): they go into sold, the rest are freed.
local hold = ARGV[4]
if not loaded() then return {'NOT_LOADED'} end
local holder, _, seats, _, _, principal = read_hold(hold)
if not seats then return {'ALREADY'} end
local sold = {}
for _, seat in ipairs(split(ARGV[5])) do
  if redis.call('SADD', K_SOLD, seat) == 1 then sold[#sold + 1] = seat end
end
append_feed('BOOKED', sold)
append_feed('RELEASED', free_seats(hold, split(seats)))
redis.call('DEL', hold_key(hold))
redis.call('ZREM', K_DEADLINES, hold)
untrack(hold, principal, holder, seats)
return {'OK'}
