-- The sold and held seats of an event and the feed position, atomically.
-- Held seats come from the held-seats index (see _prelude.lua): one range read,
-- however many holds there are. An event whose holds predate the index (data
-- written by an older version) has it built here once, from its holds.
if not loaded() then return {'NOT_LOADED'} end
if redis.call('HGET', K_META, 'held_index') ~= '1' then
  for _, hold in ipairs(redis.call('ZRANGE', K_DEADLINES, 0, -1)) do
    local seats = redis.call('HGET', hold_key(hold), 'seats')
    for _, seat in ipairs(split(seats)) do
      local value = redis.call('GET', seat_key(seat))
      if value and seat_live(value) then
        local owner, exp = parse_seat(value)
        if owner == hold then
          if exp == 0 then exp = '+inf' end
          redis.call('ZADD', K_HELD, exp, seat)
        end
      end
    end
  end
  redis.call('HSET', K_META, 'held_index', '1')
end
local held = redis.call('ZRANGEBYSCORE', K_HELD, '(' .. NOW, '+inf')
local last = redis.call('XREVRANGE', K_FEED, '+', '-', 'COUNT', 1)
local cursor = '0-0'
if #last > 0 then cursor = last[1][1] end
return {'OK', redis.call('HGET', K_META, 'epoch') or '', cursor,
  redis.call('SMEMBERS', K_SOLD), held}
