-- Expire the holds whose deadline has passed and put EXPIRED on the feed.
-- Confirming holds past their deadline are returned for repair: only SQL
-- knows whether they were booked. ARGV[4] max holds per call (keeps one call
-- short: Redis serves nobody else meanwhile).
-- One feed entry carries every seat this call freed (each seat once): as if
-- the holds had expired one after another, since nothing runs in between.
-- Returns {'OK', expired count, next deadline or '', 1 if the batch was full
-- (more may be due) else 0, confirming hold ids...}
if not loaded() then return {'NOT_LOADED'} end
local limit = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', NOW, 'LIMIT', 0, limit)
local expired, confirming = 0, {}
local dead_keys, gone, by_holder = {}, {}, {}
local seat_ids, owners, seat_keys = {}, {}, {}  -- the seats of the expired holds

for _, hold in ipairs(due) do
  local key = hold_key(hold)
  -- read_hold's fields, only those needed here (fewer is measurably cheaper)
  local h = redis.call('HMGET', key, 'holder', 'state', 'seats', 'principal')
  local holder, state, seats, principal = h[1], h[2], h[3], h[4] or ANONYMOUS
  if state == 'confirming' then
    confirming[#confirming + 1] = hold
  else
    if state == 'held' then
      for _, seat in ipairs(split(seats)) do
        seat_ids[#seat_ids + 1] = seat
        owners[#owners + 1] = hold
        seat_keys[#seat_keys + 1] = seat_key(seat)
      end
      expired = expired + 1
    end
    dead_keys[#dead_keys + 1] = key
    gone[#gone + 1] = hold
    if holder then
      local tracked = holder_key(principal, holder)
      local list = by_holder[tracked]
      if not list then list = {}; by_holder[tracked] = list end
      list[#list + 1] = holder_entry(hold, seats)
      list[#list + 1] = hold  -- the form of entries from before counts were kept
    end
  end
end

-- Many keys per command, in slices that stay within Lua's unpack limit.
local SLICE = 1000
local function each_slice(cmd, key, items)
  for i = 1, #items, SLICE do
    local last = math.min(i + SLICE - 1, #items)
    if key then
      redis.call(cmd, key, unpack(items, i, last))
    else
      redis.call(cmd, unpack(items, i, last))
    end
  end
end

-- As free_seats: a hold's own seat keys go, keys that lapsed by TTL count as
-- free, seats another hold took since or sold stay as they are; each seat is
-- reported once. Nothing between these reads and the writes below changes a
-- seat key (no other hold of this batch owns one of these).
local candidates, seen = {}, {}
for i = 1, #seat_keys, SLICE do
  local last = math.min(i + SLICE - 1, #seat_keys)
  local values = redis.call('MGET', unpack(seat_keys, i, last))
  for j = 1, last - i + 1 do
    local k, value = i + j - 1, values[j]
    local mine = value and parse_seat(value) == owners[k]
    if mine then dead_keys[#dead_keys + 1] = seat_keys[k] end
    if (mine or not value) and not seen[seat_ids[k]] then
      seen[seat_ids[k]] = true
      candidates[#candidates + 1] = seat_ids[k]
    end
  end
end
local freed = {}
for i = 1, #candidates, SLICE do
  local last = math.min(i + SLICE - 1, #candidates)
  local sold = redis.call('SMISMEMBER', K_SOLD, unpack(candidates, i, last))
  for j = 1, last - i + 1 do
    if sold[j] == 0 then freed[#freed + 1] = candidates[i + j - 1] end
  end
end

each_slice('DEL', nil, dead_keys)
-- The held-seats index: every due hold's seats score at most now, as do seat
-- keys that lapsed by TTL earlier; a seat held again since scores later and
-- stays. One range removal, not one per seat.
redis.call('ZREMRANGEBYSCORE', K_HELD, '-inf', NOW)
if #confirming == 0 then
  -- The due holds are the first #due by rank: drop them in one step.
  if #due > 0 then redis.call('ZREMRANGEBYRANK', K_DEADLINES, 0, #due - 1) end
else
  each_slice('ZREM', K_DEADLINES, gone)
end
for key, holds in pairs(by_holder) do each_slice('ZREM', key, holds) end
append_feed('EXPIRED', freed)

local nxt = redis.call('ZRANGE', K_DEADLINES, 0, 0, 'WITHSCORES')
local full = 0
if #due >= limit then full = 1 end
local reply = {'OK', expired, nxt[2] or '', full}
for _, hold in ipairs(confirming) do reply[#reply + 1] = hold end
return reply
