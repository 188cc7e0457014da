-- Expire the holds whose deadline has passed and put EXPIRED on the feed.
-- Confirming holds past their deadline are returned for repair: only SQL
-- knows whether they were booked. ARGV[4] max holds per call.
-- Returns {'OK', expired count, next deadline or '', confirming hold ids...}
if not loaded() then return {'NOT_LOADED'} end
local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[4]))
local expired, confirming = 0, {}
for _, hold in ipairs(due) do
  local holder, state, seats, _, _, principal = read_hold(hold)
  if state == 'confirming' then
    confirming[#confirming + 1] = hold
  else
    if state == 'held' then
      append_feed('EXPIRED', free_seats(hold, split(seats)))
      expired = expired + 1
    end
    redis.call('DEL', hold_key(hold))
    redis.call('ZREM', K_DEADLINES, hold)
    untrack(hold, principal, holder)
  end
end
local nxt = redis.call('ZRANGE', K_DEADLINES, 0, 0, 'WITHSCORES')
local reply = {'OK', expired, nxt[2] or ''}
for _, hold in ipairs(confirming) do reply[#reply + 1] = hold end
return reply
