-- The sold and held seats of an event and the feed position, atomically.
-- Cost grows with the holds and sales, not with the size of the seat map.
if not loaded() then return {'NOT_LOADED'} end
local held = {}
for _, hold in ipairs(redis.call('ZRANGE', K_DEADLINES, 0, -1)) do
  local seats = redis.call('HGET', hold_key(hold), 'seats')
  for _, seat in ipairs(split(seats)) do
    local value = redis.call('GET', seat_key(seat))
    if value and seat_live(value) and parse_seat(value) == hold then
      held[#held + 1] = seat
    end
  end
end
local last = redis.call('XREVRANGE', K_FEED, '+', '-', 'COUNT', 1)
local cursor = '0-0'
if #last > 0 then cursor = last[1][1] end
return {'OK', redis.call('HGET', K_META, 'epoch') or '', cursor,
  redis.call('SMEMBERS', K_SOLD), held}
