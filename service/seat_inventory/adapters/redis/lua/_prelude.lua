-- Shared helpers, prepended to every script when it is registered.
--
-- Every script of an event gets KEYS[1..5] = seats, sold, deadlines, feed, meta
-- and ARGV[1..3] = key prefix "{e:<event>}", clock override, feed MAXLEN.
-- Keys a script only discovers while it runs (seat and hold keys) are built
-- from the prefix, so they share the event's hash slot (Redis Cluster safe).
--
-- A seat key holds "<hold_id>|<expires_ms>" with PX = the hold's expiry;
-- expires_ms 0 means pinned by a Confirm in flight. A seat is taken when its
-- key exists and is pinned or not yet expired by the clock; the clock check
-- makes an injected test clock and Redis's own TTL agree.
local K_SEATS, K_SOLD, K_DEADLINES, K_FEED, K_META = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local PREFIX = ARGV[1]
local FEED_MAXLEN = ARGV[3]

local function clock_now()
  if ARGV[2] ~= '' then return tonumber(ARGV[2]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = clock_now()

local function seat_key(seat) return PREFIX .. ':seat:' .. seat end
local function hold_key(hold) return PREFIX .. ':hold:' .. hold end

-- The held seats, for snapshots: a ZSET seat -> its hold's expiry ('+inf'
-- while pinned by a Confirm), written wherever a seat key is set or deleted.
-- A seat is held when its score is later than now, so seat keys that lapse by
-- TTL drop out by themselves (expire_due removes their entries). The seat
-- keys decide every reservation; this index only spares a snapshot a read of
-- every hold and seat key.
local K_HELD = PREFIX .. ':held'

local function index_held(seats, score)
  local args = {}
  for _, seat in ipairs(seats) do
    args[#args + 1] = score
    args[#args + 1] = seat
  end
  if #args > 0 then redis.call('ZADD', K_HELD, unpack(args)) end
end

local function split(csv)
  local out = {}
  if not csv or csv == '' then return out end  -- nil, or false: a missing key or field
  for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  return out
end

-- hold id and expiry of a seat key's value
local function parse_seat(value)
  local sep = string.find(value, '|', 1, true)
  return string.sub(value, 1, sep - 1), tonumber(string.sub(value, sep + 1))
end

local function seat_live(value)
  if not value then return false end
  local _, exp = parse_seat(value)
  return exp == 0 or exp > NOW
end

-- Whether no other hold has taken one of a hold's seats. A hold's seat keys
-- expire with it, but Redis may time a key's expiry from the script's start
-- while NOW comes from TIME a moment later: in that sliver another Reserve
-- may take a seat of a hold that still looks live. Claim and extend check
-- this before they write its seat keys again.
local function seats_still_mine(hold, seats)
  for _, seat in ipairs(seats) do
    local value = redis.call('GET', seat_key(seat))
    if value and parse_seat(value) ~= hold then return false end
  end
  return true
end

-- The Redis process serving this script ('' where INFO is unavailable, as in
-- fakeredis). Every process has its own run_id: a restart (from an on-disk
-- snapshot too) or a failover to a replica changes it.
local function server_run()
  local ok, info = pcall(redis.call, 'INFO', 'server')
  if not ok then return '' end
  local at = string.find(info, 'run_id:', 1, true)  -- plain find: cheaper than a pattern
  if not at then return '' end
  return string.sub(info, at + 7, at + 46)  -- 40 hex digits
end

-- An event is loaded when its seats are here and were loaded by this Redis
-- process. State that came back from a snapshot, or through a replica that may
-- have missed the latest writes, can be older than SQL (a seat sold since free
-- to hold): it counts as not loaded, and the service reloads it from SQL first.
local function loaded()
  if redis.call('EXISTS', K_SEATS) == 0 then return false end
  return redis.call('HGET', K_META, 'run') == server_run()
end

local function append_feed(reason, seats)
  if #seats == 0 then return '' end
  return redis.call('XADD', K_FEED, 'MAXLEN', '~', FEED_MAXLEN, '*',
    'r', reason, 's', table.concat(seats, ','))
end

-- Frees the seats of `hold` that are free once it is gone: its own seat keys
-- are deleted, keys that lapsed by TTL count as free, seats another hold has
-- taken since, or that are sold, are left alone. Returns the freed seat ids,
-- which is exactly what the feed must report.
local function free_seats(hold, seats)
  local freed = {}
  for _, seat in ipairs(seats) do
    local key = seat_key(seat)
    local value = redis.call('GET', key)
    if value then
      local owner = parse_seat(value)
      if owner == hold then
        redis.call('DEL', key)
        redis.call('ZREM', K_HELD, seat)
        if redis.call('SISMEMBER', K_SOLD, seat) == 0 then freed[#freed + 1] = seat end
      end
    elseif redis.call('SISMEMBER', K_SOLD, seat) == 0 then
      freed[#freed + 1] = seat
    end
  end
  return freed
end

-- A hold is owned by a holder id of an authenticated principal; holds made
-- before principals were recorded belong to the anonymous one (auth off).
local ANONYMOUS = 'anonymous'

-- The fields of a hold, or nil. Returns holder, state, seats csv, expires, cap, principal.
local function read_hold(hold)
  local h = redis.call('HMGET', hold_key(hold),
    'holder', 'state', 'seats', 'expires_at', 'cap', 'principal')
  if not h[1] then return nil end
  return h[1], h[2], h[3], tonumber(h[4]), tonumber(h[5]), h[6] or ANONYMOUS
end

-- The live holds of one holder of one principal: a ZSET "<hold>|<seat count>"
-- -> the time the hold stops counting (its expiry; its repair deadline once
-- claimed), so counting a holder's seats is one range read. Principal names
-- never contain '|', so the key names one (principal, holder) pair; hold ids
-- never do either. Entries written before the count was kept are the bare
-- hold id (reserve reads their seats from the hold record).
local function holder_key(principal, holder)
  return PREFIX .. ':holder:' .. principal .. '|' .. holder
end

local function seat_count(csv)
  if not csv or csv == '' then return 0 end
  local _, commas = string.gsub(csv, ',', ',')
  return commas + 1
end

-- A hold's entry in its holder's ZSET, from its seats csv.
local function holder_entry(hold, seats_csv)
  return hold .. '|' .. seat_count(seats_csv)
end

-- Moves a tracked hold's time (ZADD XX: only an entry that is there), in
-- either form.
local function retrack(principal, holder, hold, seats_csv, until_ms)
  redis.call('ZADD', holder_key(principal, holder), 'XX',
    until_ms, holder_entry(hold, seats_csv), until_ms, hold)
end

-- A hold is gone (released, expired, booked, given up): it stops counting.
local function untrack(hold, principal, holder, seats_csv)
  if principal and holder then
    redis.call('ZREM', holder_key(principal, holder), holder_entry(hold, seats_csv), hold)
  end
end

-- The common checks of release / extend / claim: loaded, exists, owned (by
-- the holder id and the principal alike), live. Returns nil and an error
-- reply, or the hold's fields.
local function owned_live_hold(hold, holder, principal)
  if not loaded() then return nil, {'NOT_LOADED'} end
  local owner, state, seats, exp, cap, by = read_hold(hold)
  if not owner then return nil, {'NOT_FOUND'} end
  if owner ~= holder or by ~= principal then return nil, {'NOT_OWNED'} end
  if state == 'held' and exp <= NOW then return nil, {'NOT_FOUND'} end
  return {owner = owner, state = state, seats = seats, exp = exp, cap = cap, principal = by}
end
