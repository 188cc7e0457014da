-- A booking was cancelled in SQL: its seats leave sold and are offered again.
-- ARGV[4] seats csv. Idempotent: only seats still in sold are reported.
if not loaded() then return {'NOT_LOADED'} end
local freed = {}
for _, seat in ipairs(split(ARGV[4])) do
  if redis.call('SREM', K_SOLD, seat) == 1 then freed[#freed + 1] = seat end
end
append_feed('CANCELLED', freed)
return {'OK'}
