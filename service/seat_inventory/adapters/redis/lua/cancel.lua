-- A booking was cancelled in SQL: its seats leave sold and are offered again.
-- ARGV[4] seats csv (those no active booking holds), [5] the booking's hold id
-- ('' if unknown). Idempotent: only seats still in sold are reported.
if not loaded() then return {'NOT_LOADED'} end
local freed, seen = {}, {}
for _, seat in ipairs(split(ARGV[4])) do
  if redis.call('SREM', K_SOLD, seat) == 1 then
    freed[#freed + 1] = seat
    seen[seat] = true
  end
end
-- The booking's hold may still be confirming: its sale committed but not yet
-- mirrored (a finalize deferred, or a repair between reading the booking and
-- finalizing). Give it up now, so that the late finalize finds nothing to
-- mirror instead of putting the cancelled seats back into sold.
local hold = ARGV[5]
if hold ~= '' then
  local holder, state, seats, _, _, principal = read_hold(hold)
  if state == 'confirming' then
    for _, seat in ipairs(free_seats(hold, split(seats))) do
      if not seen[seat] then freed[#freed + 1] = seat end
    end
    redis.call('DEL', hold_key(hold))
    redis.call('ZREM', K_DEADLINES, hold)
    untrack(hold, principal, holder, seats)
  end
end
append_feed('CANCELLED', freed)
return {'OK'}
