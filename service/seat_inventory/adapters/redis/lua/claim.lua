-- Confirm, step 1: pin a live, owned hold so it cannot lapse while SQL commits.
-- KEYS[6] hold key. ARGV[4] hold id, [5] holder, [6] minimum confirm window ms,
-- [7] principal.
-- The repair deadline is the later of the hold's expiry and now + the window:
-- a Confirm that fails on a database outage can be retried until then.
-- Returns {'CLAIMED', seats csv} (also when another Confirm claimed it first).
local hold = ARGV[4]
local h, err = owned_live_hold(hold, ARGV[5], ARGV[7])
if not h then return err end
if h.state == 'released' then return {'NOT_FOUND'} end
if h.state == 'held' then
  local seats = split(h.seats)
  if not seats_still_mine(hold, seats) then return {'NOT_FOUND'} end
  local deadline = math.max(h.exp, NOW + tonumber(ARGV[6]))
  local value = hold .. '|0'
  for _, seat in ipairs(seats) do
    redis.call('SET', seat_key(seat), value)  -- no PX: pinned until finalize or repair
  end
  index_held(seats, '+inf')
  redis.call('HSET', KEYS[6], 'state', 'confirming', 'confirm_deadline', deadline)
  redis.call('ZADD', K_DEADLINES, deadline, hold)
  -- still the holder's seats until finalize or repair
  retrack(h.principal, h.owner, hold, h.seats, deadline)
end
return {'CLAIMED', h.seats}
