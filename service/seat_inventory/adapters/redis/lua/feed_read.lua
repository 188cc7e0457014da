-- Read-only, registered without the prelude. The entries of an event's feed
-- after a position, with the epoch, in one atomic step so that a trim or a
-- reload cannot slip between the continuity check and the read.
-- KEYS[1] feed, KEYS[2] meta. ARGV[1] position ('' = epoch and tail only),
-- ARGV[2] max entries.
-- Returns {epoch, 'OK' | 'GONE' | 'TAIL', tail id, entries...}.
local K_FEED, K_META = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', K_META, 'epoch') or ''

-- An event loaded by another Redis process than this one (a restart from an
-- on-disk snapshot, a promoted replica) is not loaded: its feed is a stale
-- copy, possibly forked from what streams saw. Answer as for no event at all
-- (no epoch), so every stream takes a snapshot, which reloads the event from
-- SQL under a new epoch. As the prelude's loaded() (not included here).
if epoch ~= '' then
  local ok, info = pcall(redis.call, 'INFO', 'server')
  local run = ''
  if ok then
    local at = string.find(info, 'run_id:', 1, true)
    if at then run = string.sub(info, at + 7, at + 46) end
  end
  if redis.call('HGET', K_META, 'run') ~= run then epoch = '' end
end
local last = redis.call('XREVRANGE', K_FEED, '+', '-', 'COUNT', 1)
local tail = '0-0'
if #last > 0 then tail = last[1][1] end

local after = ARGV[1]
if after == '' then return {epoch, 'TAIL', tail} end
local count = tonumber(ARGV[2])

local entries
if after == '0-0' then
  -- The position before this epoch's first change: only valid while the
  -- feed has lost nothing (entries-added counts every XADD since the load).
  if redis.call('EXISTS', K_FEED) == 1 then
    local info = redis.call('XINFO', 'STREAM', K_FEED)
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if tonumber(fields['entries-added']) ~= tonumber(fields['length']) then
      return {epoch, 'GONE', tail}
    end
  end
  entries = redis.call('XRANGE', K_FEED, '-', '+', 'COUNT', count)
else
  -- Trimming removes the oldest entries only, so the position still being
  -- there proves that nothing after it is missing. Inclusive start on purpose.
  local ok, found = pcall(redis.call, 'XRANGE', K_FEED, after, '+', 'COUNT', count + 1)
  if not ok or #found == 0 or found[1][1] ~= after then return {epoch, 'GONE', tail} end
  table.remove(found, 1)
  entries = found
end
local reply = {epoch, 'OK', tail}
for _, entry in ipairs(entries) do reply[#reply + 1] = entry end
return reply
