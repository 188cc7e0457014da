-- Give up a hold. KEYS[6] hold key.
-- ARGV[4] hold id, [5] holder, [6] tombstone ms (how long a second Release
-- still answers released=false instead of HOLD_NOT_FOUND), [7] principal,
-- [8] this call's own token: the same call sent again after its reply was
-- lost still answers that it released the hold.
local hold = ARGV[4]
local h, err = owned_live_hold(hold, ARGV[5], ARGV[7])
if not h then return err end
if h.state == 'released' then
  if ARGV[8] ~= '' and redis.call('HGET', KEYS[6], 'released_by') == ARGV[8] then
    return {'OK'}
  end
  return {'ALREADY'}
end
if h.state == 'confirming' then return {'CONFIRMING'} end

local freed = free_seats(hold, split(h.seats))
redis.call('ZREM', K_DEADLINES, hold)
untrack(hold, h.principal, h.owner, h.seats)
redis.call('HSET', KEYS[6], 'state', 'released', 'released_by', ARGV[8])
redis.call('PEXPIRE', KEYS[6], ARGV[6])
append_feed('RELEASED', freed)
return {'OK'}
