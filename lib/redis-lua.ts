// Lua scripts of the Redis engine (lib/redis-engine.ts), each run with EVALSHA, each one atomic
// step in the shared store. Keys, for channel c (the id's raw bytes, one per char, sent as UTF-8):
//
//   pk:m:<c>   hash    lt lg (last id), ft fg (floor, §11a), g (generation: a new record, a new g)
//   pk:b:<c>   stream  the buffer; entry id = message id `seconds-tag`, fields p (published ms),
//                      d (body), c (content type, absent = none), e (event, absent = none)
//   pk:s:<c>   hash    subscriber counts: node id -> that node's count; `~r` -> ms of the last arrival
//   pk:x:<c>   string  tombstone: the generation a DELETE removed (recovery tells delete from wipe)
//   pk:nodes   zset    node id -> ms until which it is alive (heartbeat every 2 s, 6 s of life)
//   pk:n:<id>  set     channels a node has counts in, so a dead node's counts can be swept
//
// Pub/sub channel `pk:c:<c>` (SPUBLISH on Redis >= 7, else PUBLISH) carries
//   `m<seconds> <tag> <published ms> <ct bytes|-1> <event bytes|-1> <g>\n<ct><event><body>` or `d<g>`.
// Counts are absolute per node (HSET node n, not HINCRBY): a write repeated after a reconnect, or
// replayed in full by a node that was swept, can never count twice.

const COMMON = `
local P = 'pk:'
local function clock()
  local t = redis.call('TIME')
  local s = tonumber(t[1])
  return s, s * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%06d', tonumber(t[2]))
end
-- messages past the timeout leave the buffer oldest-first; returns the newest id that left
local function expire(b, ttl, nowms)
  if ttl <= 0 then return nil end
  local ft, fg
  while true do
    local e = redis.call('XRANGE', b, '-', '+', 'COUNT', 1)[1]
    if e == nil then break end
    local p
    local f = e[2]
    for i = 1, #f, 2 do if f[i] == 'p' then p = tonumber(f[i + 1]) break end end
    if p ~= nil and p + ttl > nowms then break end
    redis.call('XDEL', b, e[1])
    ft, fg = string.match(e[1], '^(%d+)-(%d+)$')
  end
  return ft, fg
end
-- subscribers summed over live nodes, and ms of the last arrival (-1: never)
local function count(s, nodes, nowms)
  local h = redis.call('HGETALL', s)
  local n, req = 0, -1
  for i = 1, #h, 2 do
    if h[i] == '~r' then
      req = tonumber(h[i + 1])
    else
      local alive = redis.call('ZSCORE', nodes, h[i])
      if alive and tonumber(alive) > nowms then n = n + tonumber(h[i + 1]) end
    end
  end
  return n, req
end
local function requested(req, nowms)
  if req < 0 then return -1 end
  return math.floor((nowms - req) / 1000)
end
`

/** KEYS m b s nodes; ARGV body ct hasCt event hasEvent bufferLength ttlMs pubsubChannel sharded. */
export const PUBLISH = COMMON + `
local sec, nowms, micros = clock()
local ttl = tonumber(ARGV[7])
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg', 'ft', 'fg', 'g')
local lt, lg, ft, fg, g = tonumber(m[1]), tonumber(m[2]), m[3], m[4], m[5]
if lt == nil then
  -- a new channel record: created now, nothing has left it yet
  lt, lg, ft, fg, g = 0, 0, sec, -1, micros
  redis.call('HSET', KEYS[1], 'g', g)
end
local et, eg = expire(KEYS[2], ttl, nowms)
if et then ft, fg = et, eg end
-- §2.1: strictly increasing; a clock that steps back keeps the last seconds and counts on
if sec > lt then lt, lg = sec, 0 else lg = lg + 1 end
local maxlen = tonumber(ARGV[6])
local len = redis.call('XLEN', KEYS[2])
if len >= maxlen then
  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', len - maxlen + 1)
  ft, fg = string.match(old[#old][1], '^(%d+)-(%d+)$')
end
local id = string.format('%d-%d', lt, lg)
local ct, ev = '', ''
local ctl, evl = -1, -1
if ARGV[3] == '1' then ct = ARGV[2] ctl = #ct end
if ARGV[5] == '1' then ev = ARGV[4] evl = #ev end
if ctl >= 0 and evl >= 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', maxlen, id, 'p', nowms, 'd', ARGV[1], 'c', ct, 'e', ev)
elseif ctl >= 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', maxlen, id, 'p', nowms, 'd', ARGV[1], 'c', ct)
elseif evl >= 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', maxlen, id, 'p', nowms, 'd', ARGV[1], 'e', ev)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '=', maxlen, id, 'p', nowms, 'd', ARGV[1])
end
redis.call('HSET', KEYS[1], 'lt', lt, 'lg', lg, 'ft', ft, 'fg', fg)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local n, req = count(KEYS[3], KEYS[4], nowms)
local head = string.format('m%d %d %d %d %d %s\\n', lt, lg, nowms, ctl, evl, g)
redis.call(ARGV[9] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[8], head .. ct .. ev .. ARGV[1])
return {n, redis.call('XLEN', KEYS[2]), requested(req, nowms), lt, lg}
`

const INFO_BODY = `
local sec, nowms = clock()
local ttl = tonumber(ARGV[1])
local et, eg = expire(KEYS[2], ttl, nowms)
if et and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'ft', et, 'fg', eg) end
local len = redis.call('XLEN', KEYS[2])
local n, req = count(KEYS[3], KEYS[4], nowms)
-- §3.2 lifetime: a channel exists while it has a buffered message or a subscriber
if len == 0 and n == 0 then return false end
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg')
local info = {n, len, requested(req, nowms), tonumber(m[1]) or 0, tonumber(m[2]) or 0}
`

/** KEYS m b s nodes; ARGV ttlMs. Nil when the channel does not exist. */
export const INFO = COMMON + INFO_BODY + 'return info\n'

/** KEYS m b s nodes x; ARGV ttlMs pubsubChannel sharded. Info as it was, or nil. */
export const DELETE = COMMON + INFO_BODY + `
local g = redis.call('HGET', KEYS[1], 'g')
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if f ~= '~r' then redis.call('SREM', P .. 'n:' .. f, string.sub(KEYS[1], #P + 3)) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if g then redis.call('SET', KEYS[5], g, 'PX', math.max(ttl, 3600000)) end
redis.call(ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[2], 'd' .. (g or ''))
return info
`

/**
 * KEYS m b x; ARGV ttlMs start (`-` or `(<seconds>-<tag>`). The channel record and its buffered
 * messages after start: {exists, lt, lg, ft, fg, g, tombstone, entries}.
 */
export const LOAD = COMMON + `
local sec, nowms = clock()
local ttl = tonumber(ARGV[1])
local et, eg = expire(KEYS[2], ttl, nowms)
if et and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'ft', et, 'fg', eg) end
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg', 'ft', 'fg', 'g')
local exists = m[1] and 1 or 0
return {exists, tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0, tonumber(m[4]) or -1, m[5] or '',
  redis.call('GET', KEYS[3]) or '', redis.call('XRANGE', KEYS[2], ARGV[2], '+')}
`

/**
 * After Redis lost the record (a restart without persistence), a node that still holds a replica
 * seeds the last id back, so ids stay strictly increasing; what left with Redis is below the floor.
 * KEYS m; ARGV lt lg ttlMs. Returns the generation now in force.
 */
export const SEED = COMMON + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local sec, nowms, micros = clock()
  redis.call('HSET', KEYS[1], 'lt', ARGV[1], 'lg', ARGV[2], 'ft', ARGV[1], 'fg', ARGV[2], 'g', micros)
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return redis.call('HGET', KEYS[1], 'g')
`

/**
 * This node's count on one channel, absolute. KEYS s nodeSet; ARGV node count channel arrived
 * lingerMs. `arrived` = 1 stamps the channel as requested now.
 */
export const COUNT = COMMON + `
local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], n)
  redis.call('PERSIST', KEYS[1])
  redis.call('SADD', KEYS[2], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[3])
end
if ARGV[4] == '1' then
  local sec, nowms = clock()
  redis.call('HSET', KEYS[1], '~r', nowms)
end
if n <= 0 and redis.call('HLEN', KEYS[1]) <= 1 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return n
`

/**
 * Heartbeat: KEYS nodes; ARGV node lifeMs. Marks this node alive and sweeps up to 16 dead ones
 * (their counts leave every channel). Returns 0 when this node had been given up for dead, so it
 * rewrites its counts.
 */
export const HEARTBEAT = COMMON + `
local sec, nowms = clock()
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], nowms + tonumber(ARGV[2]), ARGV[1])
for _, d in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowms, 'LIMIT', 0, 16)) do
  for _, c in ipairs(redis.call('SMEMBERS', P .. 'n:' .. d)) do redis.call('HDEL', P .. 's:' .. c, d) end
  redis.call('DEL', P .. 'n:' .. d)
  redis.call('ZREM', KEYS[1], d)
end
if was and tonumber(was) > nowms then return 1 end
return 0
`

/** Leaving for good: KEYS nodes nodeSet; ARGV node. */
export const LEAVE = COMMON + `
for _, c in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('HDEL', P .. 's:' .. c, ARGV[1]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`
