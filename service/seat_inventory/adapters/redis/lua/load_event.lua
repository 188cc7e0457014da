-- Load an event's seats and sold seats from the system of record, unless it
-- is loaded already (by this Redis process: see loaded()). ARGV[4] epoch (a
-- fresh token: cursors of an older feed are recognised as stale), [5] number
-- of seat ids, then the seat ids, then the sold seat ids.
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

-- Loaded by another Redis process (restarted from a snapshot, or a replica
-- since promoted): its holds stay (each still decides its own seats, and the
-- sweeper lapses them), the sold seats come from SQL again, and the feed
-- starts a new epoch so that subscribers take a fresh snapshot.
local stale = redis.call('EXISTS', K_SEATS) == 1
redis.call('DEL', K_SOLD, K_FEED)
add_range(K_SEATS, first_seat, first_sold - 1)
add_range(K_SOLD, first_sold, #ARGV)
-- The held-seats index starts complete in a fresh event (nothing is held);
-- one that kept its holds has it rebuilt from them on its next snapshot.
local index = '1'
if stale then
  redis.call('DEL', K_HELD)
  index = '0'
end
redis.call('HSET', K_META, 'epoch', ARGV[4], 'loaded_at', NOW, 'held_index', index,
  'run', server_run())
return {'OK'}
