"""Lua scripts (plain EVAL, so Redis 6.2 works): each queue operation is one atomic round trip."""

from __future__ import annotations

# Helpers shared by the scripts. Invariant they rely on: an entry leaves its stream only by
# XACK + XDEL in the same script, so a stream holds exactly the waiting entries plus the
# group's pending ones, and waiting = XLEN - pending + released (released entries are pending
# under RELEASED but wait for a worker again). Redis 6.2 has no XINFO lag, hence this count.
_HELPERS = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function id_ms(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function id_lt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

-- waiting and in-flight counts of one stream
local function counts(stream, group, released)
  local len = redis.call('XLEN', stream)
  if len == 0 then return 0, 0, 0 end
  local p = redis.call('XPENDING', stream, group)
  local pending = tonumber(p[1])
  local rel = 0
  if pending > 0 and p[4] then
    for _, c in ipairs(p[4]) do
      if c[1] == released then rel = tonumber(c[2]) end
    end
  end
  return len - pending + rel, pending - rel, rel
end

local function last_delivered(stream, group)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then return last end
  end
  return '0-0'
end

local function total_slots(workers, worker_prefix)
  local total = 0
  for _, name in ipairs(redis.call('SMEMBERS', workers)) do
    local v = redis.call('GET', worker_prefix .. name)
    if v then total = total + tonumber(v) else redis.call('SREM', workers, name) end
  end
  return total
end

local function avg_handle_ms(handle, default_ms)
  local v = redis.call('HGET', handle, 'avg_ms')
  if v then return tonumber(v) end
  return default_ms
end

-- The formula is documented in orchestrator.queue.__init__.
local function expected_wait_ms(position, slots, busy, avg)
  local free = math.max(slots - busy, 0)
  if position <= free then return 0 end
  return (position - free) * avg / math.max(slots, 1)
end

local function observe(hist, wait_ms, bounds)
  local label = '+Inf'
  for _, b in ipairs(bounds) do
    if wait_ms <= tonumber(b) then label = b break end
  end
  redis.call('HINCRBY', hist, 'le:' .. label, 1)
  redis.call('HINCRBY', hist, 'count', 1)
  redis.call('HINCRBY', hist, 'sum_ms', wait_ms)
end

local function dead_letter(dead, alerts, loc, counters, call_id, job, err, attempts, idx, maxlen)
  local at = now_ms()
  local id = redis.call('XADD', dead, '*', 'c', call_id, 'j', job, 'e', err, 'a', attempts, 's', idx, 't', at)
  redis.call('HDEL', loc, call_id)
  redis.call('HINCRBY', counters, 'dead', 1)
  local alert = cjson.encode({kind = 'dead_letter', call_id = call_id, dead_id = id, error = err,
                              attempts = tonumber(attempts), at_ms = at})
  redis.call('XADD', alerts, 'MAXLEN', '~', maxlen, '*', 'kind', 'dead_letter', 'call_id', call_id,
             'dead_id', id, 'error', err, 'attempts', attempts)
  redis.call('PUBLISH', alerts, alert)
  return id
end
"""

# KEYS: admission, loc, workers, handle, counters, uses, streams...
# ARGV: call_id, stream index (1-based), job json, attempt, max_depth, max_wait_ms (-1: none), default_handle_ms,
#       dedupe_ttl_ms, group, released, worker_prefix, uses_ttl_ms, expected uses
# The admission and uses keys belong to the id the source gave; ARGV[1] and the job carry the id the call
# is queued under, which differs when the source's id was used by an earlier call (see CallQueue.admit).
ADMIT = (
    _HELPERS
    + r"""
local prev = redis.call('GET', KEYS[1])
if prev then
  redis.call('HINCRBY', KEYS[5], 'duplicates', 1)
  return {'dup', prev}
end
local uses = tonumber(redis.call('GET', KEYS[6]) or '0')
if uses ~= tonumber(ARGV[13]) then return {'reused', tostring(uses)} end
local idx = tonumber(ARGV[2])
local group, released = ARGV[9], ARGV[10]
local total, before, busy = 0, 0, 0
for i = 7, #KEYS do
  local w, b = counts(KEYS[i], group, released)
  total = total + w
  busy = busy + b
  if i - 6 <= idx then before = before + w end
end
local slots = total_slots(KEYS[3], ARGV[11])
local avg = avg_handle_ms(KEYS[4], tonumber(ARGV[7]))
if total >= tonumber(ARGV[5]) then
  redis.call('HINCRBY', KEYS[5], 'refused', 1)
  -- the backlog shrinks by one call about every avg / slots
  return {'full', 'depth', tostring(math.ceil(avg / math.max(slots, 1))), tostring(total)}
end
local position = before + 1
local wait = math.floor(expected_wait_ms(position, slots, busy, avg))
-- With no worker registered (a cold start, a deploy) the wait cannot be estimated: only the depth
-- limit applies, so a burst before the workers come up becomes a queue rather than refusals.
if slots > 0 and tonumber(ARGV[6]) >= 0 and wait > tonumber(ARGV[6]) then
  redis.call('HINCRBY', KEYS[5], 'refused', 1)
  return {'full', 'wait', tostring(wait - tonumber(ARGV[6])), tostring(wait)}
end
local id = redis.call('XADD', KEYS[6 + idx], '*', 'c', ARGV[1], 'a', ARGV[4], 'j', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], idx .. ' ' .. id)
local rec = position .. ' ' .. wait .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], rec, 'PX', ARGV[8])
redis.call('SET', KEYS[6], uses + 1, 'PX', ARGV[12])
redis.call('HINCRBY', KEYS[5], 'admitted', 1)
return {'new', rec, id}
"""
)

# KEYS: histogram, streams...   ARGV: group, consumer, count, released, bucket bounds...
# Returns flat groups of 6: stream index, entry id, deliveries, attempt, job json, waited ms.
CLAIM = (
    _HELPERS
    + r"""
local group, consumer, need, released = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local bounds, seen = {}, false
for i = 5, #ARGV do
  -- after '|': waits (ms) of calls this consumer got from a blocking read, recorded now
  if ARGV[i] == '|' then seen = true
  elseif seen then observe(KEYS[1], tonumber(ARGV[i]), bounds)
  else bounds[#bounds + 1] = ARGV[i] end
end
local out = {}
local now = nil
for i = 2, #KEYS do
  if need <= 0 then break end
  -- calls handed back by `release` go first: they were at the front when first claimed
  local rel = redis.call('XPENDING', KEYS[i], group, '-', '+', need, released)
  if #rel > 0 then
    local ids, dc = {}, {}
    for _, r in ipairs(rel) do ids[#ids + 1] = r[1]; dc[r[1]] = tonumber(r[4]) end
    local got = redis.call('XCLAIM', KEYS[i], group, consumer, 0, unpack(ids))
    for _, e in ipairs(got) do
      if e and e[2] then
        local f = e[2]
        for _, v in ipairs({i - 1, e[1], dc[e[1]] + 1, f[4], f[6], 0}) do out[#out + 1] = v end
        need = need - 1
      end
    end
  end
  if need > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', need, 'STREAMS', KEYS[i], '>')
    if r then
      now = now or now_ms()
      for _, e in ipairs(r[1][2]) do
        local f = e[2]
        local waited = math.max(now - id_ms(e[1]), 0)
        observe(KEYS[1], waited, bounds)
        for _, v in ipairs({i - 1, e[1], 1, f[4], f[6], waited}) do out[#out + 1] = v end
        need = need - 1
      end
    end
  end
end
return out
"""
)

# KEYS: stream, loc, handle, counters   ARGV: group, id, call_id, handle_ms, alpha
ACK = r"""
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local loc = redis.call('HGET', KEYS[2], ARGV[3])
if loc and string.sub(loc, -#ARGV[2]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[3]) end
local x = tonumber(ARGV[4])
local avg = redis.call('HGET', KEYS[3], 'avg_ms')
if avg then avg = tonumber(avg) + tonumber(ARGV[5]) * (x - tonumber(avg)) else avg = x end
redis.call('HSET', KEYS[3], 'avg_ms', tostring(avg))
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HINCRBY', KEYS[4], 'completed', 1)
return 1
"""

# KEYS: outcomes, once (the call's queue entry's marker)   ARGV: field, JSON, the stream's length cap, marker TTL ms
# Appends the outcome unless this entry's was appended before: a publish tried again (its confirmation fell short,
# or its holder died before the ack and the next one re-ran the ended call) adds no second record.
PUBLISH = r"""
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', ARGV[1], ARGV[2])
return 1
"""

# KEYS: streams...   ARGV: group, consumer, then pairs of (stream index, entry id)
# Renews (idle := 0) only the entries this consumer still owns; returns the ids it lost.
HEARTBEAT = r"""
local group, consumer = ARGV[1], ARGV[2]
local owned, lost = {}, {}
for i = 3, #ARGV, 2 do
  local idx, id = tonumber(ARGV[i]), ARGV[i + 1]
  local p = redis.call('XPENDING', KEYS[idx], group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    owned[idx] = owned[idx] or {}
    table.insert(owned[idx], id)
  else
    lost[#lost + 1] = id
  end
end
for idx, ids in pairs(owned) do
  local args = {'XCLAIM', KEYS[idx], group, consumer, 0}
  for _, id in ipairs(ids) do args[#args + 1] = id end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return lost
"""

# KEYS: dead, alerts, loc, counters, streams...
# ARGV: group, consumer, count, min_idle_ms, max_attempts, alerts_maxlen
# XAUTOCLAIMs idle entries (dead workers, released calls) highest priority first; an entry whose
# attempt would exceed max_attempts (it keeps killing its worker) is dead-lettered instead.
RECLAIM = (
    _HELPERS
    + r"""
local group, consumer, need = ARGV[1], ARGV[2], tonumber(ARGV[3])
local min_idle, max_attempts = ARGV[4], tonumber(ARGV[5])
local out = {}
for i = 5, #KEYS do
  if need <= 0 then break end
  local cursor = '0-0'
  repeat
    local r = redis.call('XAUTOCLAIM', KEYS[i], group, consumer, min_idle, cursor, 'COUNT', need)
    cursor = r[1]
    for _, e in ipairs(r[2]) do
      if type(e) == 'table' and e[2] then
        local p = redis.call('XPENDING', KEYS[i], group, e[1], e[1], 1)
        local deliveries = tonumber(p[1][4])
        local f = e[2]
        local attempt = tonumber(f[4]) + deliveries - 1
        if attempt > max_attempts then
          redis.call('XACK', KEYS[i], group, e[1])
          redis.call('XDEL', KEYS[i], e[1])
          dead_letter(KEYS[1], KEYS[2], KEYS[3], KEYS[4], f[2], f[6],
                      'worker lost the call ' .. (attempt - 1) .. ' times (crash or stall)',
                      tostring(attempt - 1), i - 4, ARGV[6])
        else
          for _, v in ipairs({i - 4, e[1], deliveries, f[4], f[6], 0}) do out[#out + 1] = v end
          need = need - 1
        end
      elseif type(e) == 'table' then
        redis.call('XACK', KEYS[i], group, e[1])
      end
    end
  until cursor == '0-0' or need <= 0
end
return out
"""
)

# KEYS: stream, delayed, dead, alerts, loc, counters
# ARGV: group, id, call_id, attempt, max_attempts, delay_ms, retry json, dead json, error, stream index,
#       alerts_maxlen
FAIL = (
    _HELPERS
    + r"""
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {'gone'} end
redis.call('XDEL', KEYS[1], ARGV[2])
local attempt = tonumber(ARGV[4])
if attempt >= tonumber(ARGV[5]) then
  local id = dead_letter(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[3], ARGV[8], ARGV[9], ARGV[4], ARGV[10],
                         ARGV[11])
  return {'dead', id}
end
local due = now_ms() + tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], due, ARGV[10] .. '|' .. (attempt + 1) .. '|' .. ARGV[3] .. '|' .. ARGV[7])
redis.call('HSET', KEYS[5], ARGV[3], 'delayed')
redis.call('HINCRBY', KEYS[6], 'retries', 1)
return {'retry', tostring(due)}
"""
)

# KEYS: delayed, loc, streams...   ARGV: limit
# Moves due retries back into their stream (member = "<idx>|<attempt>|<call_id>|<job json>").
PROMOTE = (
    _HELPERS
    + r"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  local idx, attempt, rest = string.match(m, '^(%d+)|(%d+)|(.*)$')
  -- call ids may contain '|': the job json starts at the first '|{'
  local cut = string.find(rest, '|{', 1, true)
  local call_id, job = string.sub(rest, 1, cut - 1), string.sub(rest, cut + 1)
  local id = redis.call('XADD', KEYS[2 + tonumber(idx)], '*', 'c', call_id, 'a', attempt, 'j', job)
  redis.call('HSET', KEYS[2], call_id, idx .. ' ' .. id)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"""
)

# KEYS: stream   ARGV: group, id, released
RELEASE = r"""
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then return 0 end
local deliveries = tonumber(p[1][4])
-- JUSTID + RETRYCOUNT: the next claim's delivery brings the count back, so a release costs no attempt
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'RETRYCOUNT', math.max(deliveries - 1, 0), 'JUSTID')
return 1
"""

# KEYS: dead, loc, streams...   ARGV: dead id, call_id, stream index, job json (attempt reset)
REPLAY = r"""
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
redis.call('XDEL', KEYS[1], ARGV[1])
local idx = tonumber(ARGV[3])
local id = redis.call('XADD', KEYS[2 + idx], '*', 'c', ARGV[2], 'a', '1', 'j', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], idx .. ' ' .. id)
return id
"""

# KEYS: admission, loc, delayed, counters, streams...   ARGV: group, released, call_id (the source's)
# Takes a call whose caller hung up out of the queue if it still waits (in its stream, handed back by
# `release`, or in its retry backoff); a call a worker holds is left to its session, which sees the caller
# leave. Returns {state, queued id}: state is waiting, delayed, in_flight or gone.
ABANDON = r"""
local group, released, queued = ARGV[1], ARGV[2], ARGV[3]
local rec = redis.call('GET', KEYS[1])
if rec then queued = string.match(rec, '^%S+ %S+ (.+)$') or queued end
local loc = redis.call('HGET', KEYS[2], queued)
if not loc then return {'gone', queued} end
if loc == 'delayed' then
  -- members are "<idx>|<attempt>|<call_id>|<job json>"; call ids may contain '|', the json starts at '|{'
  for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local rest = string.match(m, '^%d+|%d+|(.*)$')
    local cut = rest and string.find(rest, '|{', 1, true)
    if cut and string.sub(rest, 1, cut - 1) == queued then
      redis.call('ZREM', KEYS[3], m)
      redis.call('HDEL', KEYS[2], queued)
      redis.call('HINCRBY', KEYS[4], 'abandoned', 1)
      return {'delayed', queued}
    end
  end
  return {'gone', queued}
end
local idx, id = string.match(loc, '^(%d+) (.*)$')
local stream = KEYS[4 + tonumber(idx)]
local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 1 then
  if p[1][2] ~= released then return {'in_flight', queued} end
  redis.call('XACK', stream, group, id)
elseif #redis.call('XRANGE', stream, id, id) == 0 then
  return {'gone', queued}
end
-- Never delivered (or acked just above): deleting it keeps waiting = XLEN - pending + released true.
redis.call('XDEL', stream, id)
redis.call('HDEL', KEYS[2], queued)
redis.call('HINCRBY', KEYS[4], 'abandoned', 1)
return {'waiting', queued}
"""

# KEYS: loc, workers, handle, streams...
# ARGV: group, released, default_handle_ms, worker_prefix, call_id ('' = every waiting call), limit
# Returns {slots, busy, avg_ms, call_id, position, wait_ms, call_id, position, wait_ms, ...}.
WAITING = (
    _HELPERS
    + r"""
local group, released = ARGV[1], ARGV[2]
local only, limit = ARGV[5], tonumber(ARGV[6])
local slots = total_slots(KEYS[2], ARGV[4])
local avg = avg_handle_ms(KEYS[3], tonumber(ARGV[3]))
local busy = 0
local waiting = {}
for i = 4, #KEYS do
  local w, b = counts(KEYS[i], group, released)
  busy = busy + b
  waiting[i] = w
end
local target_idx, target_id = nil, nil
if only ~= '' then
  local loc = redis.call('HGET', KEYS[1], only)
  if not loc or loc == 'delayed' then return {} end
  local idx, id = string.match(loc, '^(%d+) (.*)$')
  target_idx, target_id = tonumber(idx) + 3, id
end
local out = {}
local before = 0
for i = 4, #KEYS do
  if waiting[i] > 0 and (target_idx == nil or target_idx == i) then
    local ids, calls = {}, {}
    local rel = redis.call('XPENDING', KEYS[i], group, '-', '+', waiting[i], released)
    for _, r in ipairs(rel) do ids[#ids + 1] = r[1] end
    for _, id in ipairs(ids) do
      local e = redis.call('XRANGE', KEYS[i], id, id)
      if #e > 0 then calls[id] = e[1][2][2] else calls[id] = '' end
    end
    local last = last_delivered(KEYS[i], group)
    local entries = redis.call('XRANGE', KEYS[i], '(' .. last, '+', 'COUNT', waiting[i])
    for _, e in ipairs(entries) do ids[#ids + 1] = e[1]; calls[e[1]] = e[2][2] end
    for n, id in ipairs(ids) do
      local pos = before + n
      if target_id == nil or target_id == id then
        out[#out + 1] = calls[id]
        out[#out + 1] = pos
        out[#out + 1] = tostring(math.floor(expected_wait_ms(pos, slots, busy, avg)))
        if #out >= limit * 3 then break end
      end
    end
  end
  if #out >= limit * 3 then break end
  before = before + waiting[i]
end
return out
"""
)

# KEYS: delayed, dead, workers, handle, histogram, counters, streams...
# ARGV: group, released, default_handle_ms, worker_prefix
STATS = (
    _HELPERS
    + r"""
local group, released = ARGV[1], ARGV[2]
local now = now_ms()
local per, oldest, busy = {}, 0, 0
for i = 7, #KEYS do
  local w, b, rel = counts(KEYS[i], group, released)
  busy = busy + b
  per[#per + 1] = w
  if w > 0 then
    local first = nil
    if rel > 0 then first = redis.call('XPENDING', KEYS[i], group, '-', '+', 1, released)[1][1] end
    local e = redis.call('XRANGE', KEYS[i], '(' .. last_delivered(KEYS[i], group), '+', 'COUNT', 1)
    if #e > 0 and (first == nil or id_lt(e[1][1], first)) then first = e[1][1] end
    if first then oldest = math.max(oldest, now - id_ms(first)) end
  end
end
return {per, oldest, busy, redis.call('ZCARD', KEYS[1]), redis.call('XLEN', KEYS[2]),
        total_slots(KEYS[3], ARGV[4]), tostring(avg_handle_ms(KEYS[4], tonumber(ARGV[3]))),
        redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6])}
"""
)
