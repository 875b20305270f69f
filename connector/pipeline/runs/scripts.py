"""The Lua scripts of the run bookkeeping (see `connector.pipeline.runs` for why).

Each runs atomically in Redis; the keys a script touches beyond its KEYS are derived from
the run's key prefix (one Redis server, not Redis Cluster).
"""

TRANSITION = """
local RANK = {seen = 0, pending = 1}
local function rank(s) return RANK[s] or 2 end
local changed = 0
for i = 2, #ARGV, 2 do
  local member, new = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], member)
  if (not old) or rank(new) > rank(old) then
    redis.call('HSET', KEYS[1], member, new)
    if old and old ~= 'seen' then redis.call('HINCRBY', KEYS[2], old, -1) end
    redis.call('HINCRBY', KEYS[2], new, 1)
    changed = changed + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return changed
"""

_CUT = """
local function cut(prefix, fam, n, ttl, batches)
  local pend = prefix .. ':pend:' .. fam
  local items = redis.call('LRANGE', pend, 0, n - 1)
  redis.call('LTRIM', pend, #items, -1)
  local bid = 'b' .. redis.call('INCR', prefix .. ':bseq')
  redis.call('EXPIRE', prefix .. ':bseq', ttl)
  local body = '{"family":"' .. fam .. '","items":[' .. table.concat(items, ',') .. ']}'
  redis.call('SET', prefix .. ':b:' .. bid, body, 'EX', ttl)
  redis.call('SADD', batches, bid)
  redis.call('EXPIRE', batches, ttl)
  return bid
end
"""

# KEYS: states, counts, families, batches, this chunk's batches
# ARGV: prefix, batch size, ttl, then (member, family, payload) triples
ENQUEUE = _CUT + """
local prefix, size, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local touched = {}
for i = 4, #ARGV, 3 do
  local member, fam, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[1], member)
  if (not old) or old == 'seen' then
    redis.call('HSET', KEYS[1], member, 'pending')
    redis.call('HINCRBY', KEYS[2], 'pending', 1)
    local pend = prefix .. ':pend:' .. fam
    redis.call('RPUSH', pend, payload)
    redis.call('EXPIRE', pend, ttl)
    redis.call('SADD', KEYS[3], fam)
    redis.call('EXPIRE', KEYS[3], ttl)
    touched[#touched + 1] = fam
  end
end
local out = {}
local done = {}
for _, fam in ipairs(touched) do
  if not done[fam] then
    done[fam] = true
    while redis.call('LLEN', prefix .. ':pend:' .. fam) >= size do
      local bid = cut(prefix, fam, size, ttl, KEYS[4])
      redis.call('SADD', KEYS[5], bid)
      out[#out + 1] = bid
    end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
return out
"""

# KEYS: run, chunks, chunks done, batches, batches done, families, flush batches
# ARGV: prefix, caller, batch size, ttl
COMPLETE = _CUT + """
local run, prefix, caller = KEYS[1], ARGV[1], ARGV[2]
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', run, 'fetch_done') ~= '1' then return {'wait'} end
if redis.call('SCARD', KEYS[2]) ~= redis.call('SCARD', KEYS[3]) then return {'wait'} end
local owner = redis.call('HGET', run, 'flush_owner')
if not owner then
  redis.call('HSET', run, 'flush_owner', caller)
  owner = caller
  for _, fam in ipairs(redis.call('SMEMBERS', KEYS[6])) do
    while redis.call('LLEN', prefix .. ':pend:' .. fam) > 0 do
      local bid = cut(prefix, fam, size, ttl, KEYS[4])
      redis.call('SADD', KEYS[7], bid)
      redis.call('EXPIRE', KEYS[7], ttl)
    end
  end
  redis.call('HSET', run, 'flushed', '1')
end
if owner == caller then
  local out = {'push'}
  for _, bid in ipairs(redis.call('SMEMBERS', KEYS[7])) do
    if redis.call('SISMEMBER', KEYS[5], bid) == 0 then out[#out + 1] = bid end
  end
  if #out > 1 then return out end
end
if redis.call('SCARD', KEYS[4]) ~= redis.call('SCARD', KEYS[5]) then return {'wait'} end
local finisher = redis.call('HGET', run, 'finisher')
if not finisher then
  redis.call('HSET', run, 'finisher', caller)
  return {'finish'}
end
if finisher == caller then return {'finish'} end
return {'done'}
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
