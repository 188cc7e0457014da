-- Load an event's seats and sold seats from the system of record, unless it
-- is loaded already. ARGV[4] epoch (a fresh token: cursors of an older feed
-- are recognised as stale), [5] number of seat ids, then the seat ids, then
-- the sold seat ids.
if loaded() then return {'ALREADY'} end
local n = tonumber(ARGV[5])
local first_seat, first_sold = 6, 6 + n
local CHUNK = 4000  -- unpack() must stay far below Lua's C stack limit

local function add_range(key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + CHUNK - 1, to)
    redis.call('SADD', key, unpack(ARGV, i, j))
    i = j + 1
  end
end

redis.call('DEL', K_SOLD, K_FEED)
add_range(K_SEATS, first_seat, first_sold - 1)
add_range(K_SOLD, first_sold, #ARGV)
-- the held-seats index starts complete: no seat is held in a freshly loaded event
redis.call('HSET', K_META, 'epoch', ARGV[4], 'loaded_at', NOW, 'held_index', '1')
return {'OK'}
