// Lua scripts of the Redis engine (lib/redis-engine.ts), each run with EVALSHA, each one atomic
// step in the shared store that touches the keys of ONE channel only, so every script runs on one
// slot of a Redis Cluster. Keys of channel c share the hash tag {T}, T = c with `%`, `{` and `}`
// percent-encoded (lib/redis-engine.ts hashTag), so no channel id can end the tag early:
//
//   pk:{T}:m   hash    lt lg (last id), ft fg (floor, §11a: never lowered within a record),
//                      g (generation: a new record, a new g),
//                      bt bg (the generation's base: its messages all have ids after it; a record a
//                      publish created starts at `<that second>:-1`, a seeded one at the seeded id)
//   pk:{T}:b   stream  the buffer; entry id = message id `seconds-tag`, fields p (published ms),
//                      d (body), c (content type, absent = none), e (event, absent = none)
//   pk:{T}:s   hash    subscriber counts: node id -> that node's count; `~r` -> ms of the last arrival
//   pk:{T}:x   string  tombstone: the generation a DELETE removed (recovery tells delete from wipe)
//   pk:{T}:d   string  `<lt> <lg>`: the last id a DELETE removed, as long as the tombstone: a record a
//                      publish makes again in that id's second or before goes on after it; a node
//                      that loads the channel counts a cursor up to it as a loss (LOAD)
//   pk:{T}:i:<k> string  the id an Idempotency-Key published (idempotencyWindow)
//   pk:{T}:f:<k> string  that message's fingerprint (lib/idempotency.ts), beside it: a key of its
//                      own, so a node of an older version reads pk:{T}:i:<k> as it always did
//   pk:{T}:c   shard channel (SPUBLISH on Redis >= 7, else PUBLISH)
//
// Not per channel, each used by single-key commands only: pk:nodes (zset node id -> ms until which
// it is alive), pk:n:<node> (set: channels a node has counts in, so a dead node's counts can be
// swept), pk:nt, pk:ctl, pk:{pk:nodes}:revoked and pk:{pk:nodes}:revoked-sub (lib/redis-engine.ts). Which nodes are alive is therefore
// decided by each node (its last heartbeat), not inside a script: the scripts return the raw
// counts hash and the node sums the live ones.
//
// The shard channel carries
//   `m<seconds> <tag> <published ms> <ct bytes|-1> <event bytes|-1> <g>\n<ct><event><body>`, `d<g>`
//   (deleted), or `f<g>` (the floor rose past ids a new record reused: REUSED; nodes read it again).
// Counts are absolute per node (HSET node n, not HINCRBY): a write repeated after a reconnect, or
// replayed in full by a node that was swept, can never count twice.

const COMMON = `
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
-- the counts hash (node -> n, ~r -> ms of the last arrival); the node sums its live nodes
local function counts(s)
  return redis.call('HGETALL', s)
end
local function lastreq(h)
  for i = 1, #h, 2 do if h[i] == '~r' then return tonumber(h[i + 1]) end end
  return -1
end
local function anyone(h)
  for i = 1, #h, 2 do if h[i] ~= '~r' and tonumber(h[i + 1]) > 0 then return true end end
  return false
end
-- (t1, g1) > (t2, g2)
local function above(t1, g1, t2, g2)
  t1, g1, t2, g2 = tonumber(t1), tonumber(g1), tonumber(t2), tonumber(g2)
  if t2 == nil then return true end
  return t1 > t2 or (t1 == t2 and g1 > g2)
end
-- a message that left (et, eg) raises the record's floor, never lowers it (REUSED may have set it higher)
local function floorup(m, et, eg)
  if et == nil or redis.call('EXISTS', m) == 0 then return end
  local f = redis.call('HMGET', m, 'ft', 'fg')
  if f[1] == false or above(et, eg, f[1], f[2]) then redis.call('HSET', m, 'ft', et, 'fg', eg) end
end
-- the least a channel record lives while anyone subscribes (ms): past each publish and arrival,
-- so a subscriber waiting on a quiet channel keeps its last id (the in-memory engines keep the
-- channel), and a record only an older node counts on still expires
local HELD_MS = 86400000
-- the record's expiry after a publish, a seed or an arrival with the message timeout ttl (ms)
local function holdfor(ttl, h)
  if anyone(h) then return math.max(ttl, HELD_MS) end
  return ttl
end
local function requested(req, nowms)
  if req < 0 then return -1 end
  return math.floor((nowms - req) / 1000)
end
`

/**
 * KEYS m b s idem d fp (idem and fp: m when the publish has no key); ARGV body ct hasCt event hasEvent bufferLength ttlMs pubsubChannel sharded
 * deadlineMs idemWindowMs replicaAck(0/1) fingerprint replayOnly(0/1). A publish Redis runs past its deadline (Redis' clock: the node gave up
 * and answered 503) returns {'late'}; an Idempotency-Key seen inside its window returns
 * {'dup', id, counts, len, requested}, or {'conflict', …} the same when it came with another
 * message (its fingerprint, lib/idempotency.ts, differs); else {counts, len, requested, lt, lg},
 * or {'new'} with replayOnly (nothing published: Engine.replay).
 */
export const PUBLISH = COMMON + `
local sec, nowms, micros = clock()
if nowms > tonumber(ARGV[10]) then return {'late'} end
if KEYS[4] ~= KEYS[1] then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    -- with replica acks: a write after the original's, so the WAIT that follows covers it too
    if ARGV[12] == '1' then redis.call('PEXPIRE', KEYS[4], math.max(1, redis.call('PTTL', KEYS[4]))) end
    local h = counts(KEYS[3])
    -- (no fingerprint: kept by a node of an older version, taken as a retry)
    local fp = KEYS[6] and redis.call('GET', KEYS[6])
    local verdict = (fp and fp ~= ARGV[13]) and 'conflict' or 'dup'
    return {verdict, prev, h, redis.call('XLEN', KEYS[2]), requested(lastreq(h), nowms)}
  end
end
if ARGV[14] == '1' then return {'new'} end
local ttl = tonumber(ARGV[7])
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg', 'ft', 'fg', 'g')
local lt, lg, ft, fg, g = tonumber(m[1]), tonumber(m[2]), m[3], m[4], m[5]
if lt == nil then
  -- a new channel record: created now, nothing has left it yet; nobody has asked for it since it
  -- was made unless a subscriber waits (a last arrival kept for the old record is not its own)
  lt, lg, ft, fg, g = 0, 0, sec, -1, micros
  if not anyone(counts(KEYS[3])) then redis.call('HDEL', KEYS[3], '~r') end
  local bt, bg = sec, -1
  -- made again in the second its deleted predecessor last published in (DELETE left that id in
  -- d): its ids go on after the deleted ones, which are below its floor and base (§2.1, §11a)
  local d = redis.call('GET', KEYS[5])
  if d then
    local dt, dg = string.match(d, '^(%d+) (%d+)$')
    dt, dg = tonumber(dt), tonumber(dg)
    if dt ~= nil and dt >= sec then lt, lg, ft, fg, bt, bg = dt, dg, dt, dg, dt, dg end
  end
  redis.call('HSET', KEYS[1], 'g', g, 'bt', bt, 'bg', bg)
end
local et, eg = expire(KEYS[2], ttl, nowms)
if et and above(et, eg, ft, fg) then ft, fg = et, eg end
-- §2.1: strictly increasing; a clock that steps back keeps the last seconds and counts on
if sec > lt then lt, lg = sec, 0 else lg = lg + 1 end
-- ids ahead of this clock (a record that went on after a deleted one's, the clock behind them):
-- the deleted id's key follows them, so a record made again after this one expires goes on after
-- these, not from the deleted id again (it would repeat them)
if lt > sec then redis.call('SET', KEYS[5], lt .. ' ' .. lg, 'XX', 'KEEPTTL') end
local maxlen = tonumber(ARGV[6])
local len = redis.call('XLEN', KEYS[2])
if len >= maxlen then
  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', len - maxlen + 1)
  local ot, og = string.match(old[#old][1], '^(%d+)-(%d+)$')
  if above(ot, og, ft, fg) then ft, fg = ot, og end
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
local h = counts(KEYS[3])
if ttl > 0 then
  -- the record lives as long as its messages, or a day more while anyone subscribes (COUNT)
  redis.call('PEXPIRE', KEYS[1], holdfor(ttl, h))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if KEYS[4] ~= KEYS[1] then
  redis.call('SET', KEYS[4], lt .. ':' .. lg, 'PX', ARGV[11])
  if KEYS[6] and KEYS[6] ~= KEYS[1] then redis.call('SET', KEYS[6], ARGV[13], 'PX', ARGV[11]) end
end
local head = string.format('m%d %d %d %d %d %s\\n', lt, lg, nowms, ctl, evl, g)
redis.call(ARGV[9] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[8], head .. ct .. ev .. ARGV[1])
return {h, redis.call('XLEN', KEYS[2]), requested(lastreq(h), nowms), lt, lg}
`

const INFO_BODY = `
local sec, nowms = clock()
local ttl = tonumber(ARGV[1])
local et, eg = expire(KEYS[2], ttl, nowms)
floorup(KEYS[1], et, eg)
local len = redis.call('XLEN', KEYS[2])
local h = counts(KEYS[3])
-- §3.2 lifetime: a channel exists while it has a buffered message or a subscriber (a dead node's
-- stale count may keep it here until swept: the node that sums decides, and answers 404 for 0)
if len == 0 and not anyone(h) then return false end
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg')
local info = {h, len, requested(lastreq(h), nowms), tonumber(m[1]) or 0, tonumber(m[2]) or 0}
`

/** KEYS m b s; ARGV ttlMs. Nil when the channel does not exist. */
export const INFO = COMMON + INFO_BODY + 'return info\n'

/** KEYS m b s x d; ARGV ttlMs pubsubChannel sharded. Info as it was, or nil. */
export const DELETE = COMMON + INFO_BODY + `
local g = redis.call('HGET', KEYS[1], 'g')
-- the last id, for a record made again before its second passes (PUBLISH), even where the
-- record's seconds ran ahead of this clock (a clock stepped back); and, as long as the tombstone,
-- for a node that loads the channel (LOAD): a cursor up to it may have lost what was deleted
if m[1] then
  redis.call('SET', KEYS[5], m[1] .. ' ' .. (m[2] or 0), 'PX', math.max(ttl, 3600000, (tonumber(m[1]) + 1) * 1000 - nowms + 1000))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if g then redis.call('SET', KEYS[4], g, 'PX', math.max(ttl, 3600000)) end
redis.call(ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[2], 'd' .. (g or ''))
return info
`

/**
 * KEYS m b x d; ARGV ttlMs start (`-` or `<seconds>-<tag>`, inclusive) last (`<seconds>-<tag>`, the last id
 * the caller applied, or '') evicted ('1': say how many keys this Redis has evicted). The channel
 * record and its buffered messages after start: {exists, lt, lg, ft, fg, g, tombstone, entries, bt,
 * bg, prev, sec, deleted, evicted} (bt '' on a record written before bases were kept); prev: the
 * newest buffered message at or below `last` as {id, published ms, body bytes}, or '' (the caller
 * compares it with its own copy: a different message under an id it applied means a failover lost
 * that id and a publish took it again); sec: Redis' seconds now; deleted: `<lt> <lg>`, the last id
 * a DELETE removed (pk:{T}:d), or ''; evicted: INFO stats' evicted_keys of the Redis that holds
 * the record (on a cluster, its master), -1 when not asked.
 */
export const LOAD = COMMON + `
local sec, nowms = clock()
local ttl = tonumber(ARGV[1])
local et, eg = expire(KEYS[2], ttl, nowms)
floorup(KEYS[1], et, eg)
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg', 'ft', 'fg', 'g', 'bt', 'bg')
local exists = m[1] and 1 or 0
local prev = ''
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  local e = redis.call('XREVRANGE', KEYS[2], ARGV[3], '-', 'COUNT', 1)[1]
  if e then
    local p, n = '', 0
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'p' then p = f[i + 1] elseif f[i] == 'd' then n = #f[i + 1] end
    end
    prev = {e[1], p, n}
  end
end
local evicted = -1
if ARGV[4] == '1' then evicted = tonumber(string.match(redis.call('INFO', 'stats'), 'evicted_keys:(%d+)')) or 0 end
return {exists, tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0, tonumber(m[4]) or -1, m[5] or '',
  redis.call('GET', KEYS[3]) or '', redis.call('XRANGE', KEYS[2], ARGV[2], '+'), m[6] or '', m[7] or '', prev, sec,
  (KEYS[4] and redis.call('GET', KEYS[4])) or '', evicted}
`

/**
 * After Redis lost the record (a restart without persistence), a node that still holds a replica
 * seeds the last id back, so ids stay strictly increasing; what left with Redis is below the floor.
 * KEYS m s (s absent: a node of an earlier version); ARGV lt lg ttlMs. Returns {generation now in
 * force, 1 if this call seeded it}: 0 when a record was there (another node's publish or seed got
 * in first; the caller reads it again).
 */
export const SEED = COMMON + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local sec, nowms, micros = clock()
  redis.call('HSET', KEYS[1], 'lt', ARGV[1], 'lg', ARGV[2], 'ft', ARGV[1], 'fg', ARGV[2], 'g', micros, 'bt', ARGV[1], 'bg', ARGV[2])
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], KEYS[2] and holdfor(ttl, counts(KEYS[2])) or ttl) end
  return {micros, 1}
end
return {redis.call('HGET', KEYS[1], 'g'), 0}
`

/**
 * The record's ids are behind the last this node applied: a failover lost its tail (the promoted
 * replica had not received the last messages this node applied), or a node that was behind seeded
 * it. KEYS m b; ARGV lt lg (ours) seenLt seenLg (the record's last id as the caller read it). Ids
 * continue above ours, and the floor and base move there, so a cursor in the lost range gets the
 * gap signal instead of silence; what the store still buffers is below the floor and goes. Returns
 * -1 when the record is not as the caller read it (a publish got in, which may reuse an id the
 * caller applied, or the record is gone: the caller reads it again), 1 when it moved the record,
 * 0 when its ids are not behind ours.
 */
export const FORWARD = COMMON + `
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg')
local lt, lg = tonumber(m[1]), tonumber(m[2])
local t, g = tonumber(ARGV[1]), tonumber(ARGV[2])
if lt == nil or lt ~= tonumber(ARGV[3]) or lg ~= tonumber(ARGV[4]) then return -1 end
if lt > t or (lt == t and lg >= g) then return 0 end
redis.call('HSET', KEYS[1], 'lt', t, 'lg', g, 'ft', t, 'fg', g, 'bt', t, 'bg', g)
redis.call('DEL', KEYS[2])
return 1
`

/**
 * A new record (Redis lost the old one) has messages whose ids may repeat ids a node applied from
 * the old one (`ours`, the last it applied): a cursor up to there is ambiguous, and served by id it
 * would skip what the new record holds below it without a word. Ids continue above the larger of
 * the record's last id and ours, one id further, and the floor goes to that id, which no message
 * takes: every such cursor gets the gap signal (§11a) from then on, on every node, since the shard
 * channel tells the nodes that hold the channel to read the record again (`f<g>`). The base stays,
 * so any other node that applied old ids finds the reuse too. What the store buffers is below the
 * floor now and goes, as in FORWARD. KEYS m b; ARGV g (the generation as the caller read it), lt lg (ours),
 * pubsubChannel, sharded. Returns the new last id as {lt, lg}, or -1 when the record is not the
 * generation the caller read (gone, or made again: it reads again).
 */
export const REUSED = COMMON + `
local m = redis.call('HMGET', KEYS[1], 'lt', 'lg', 'g')
if m[1] == false or m[3] ~= ARGV[1] then return -1 end
local lt, lg = tonumber(m[1]), tonumber(m[2])
if above(ARGV[2], ARGV[3], lt, lg) then lt, lg = tonumber(ARGV[2]), tonumber(ARGV[3]) end
lg = lg + 1
redis.call('HSET', KEYS[1], 'lt', lt, 'lg', lg, 'ft', lt, 'fg', lg)
redis.call('DEL', KEYS[2])
redis.call(ARGV[5] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[4], 'f' .. ARGV[1])
return {lt, lg}
`

/**
 * This node's count on one channel, absolute. KEYS s m b; ARGV node count arrived lingerMs ttlMs.
 * `arrived` = 1 stamps the channel as requested now. While anyone subscribes, the record (its last
 * id, its floor) lives a day past each arrival and publish (HELD_MS), as the in-memory engine keeps
 * a channel with a subscriber whose messages all expired; once nobody does, as long as its
 * messages, or a message timeout where it has none. The node's set pk:n:<node> is kept by the
 * node. (m and b absent, ttlMs too: a node of an earlier version.)
 */
export const COUNT = COMMON + `
local n = tonumber(ARGV[2])
local ttl = tonumber(ARGV[5] or '0')
if n > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], n)
  redis.call('PERSIST', KEYS[1])
  if KEYS[2] and ttl > 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], math.max(ttl, HELD_MS)) end
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then
  local sec, nowms = clock()
  redis.call('HSET', KEYS[1], '~r', nowms)
end
-- nobody left: no node's count (a re-sent count, or a swept one, comes without the ~r field, so the
-- fields are what counts, not how many there are)
if n <= 0 and not anyone(counts(KEYS[1])) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  if KEYS[2] and ttl > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
    -- with its messages; a record without any (FORWARD, REUSED, SEED took them, or they expired)
    -- a whole timeout: its ids must go on after the ones it kept
    local left = redis.call('PTTL', KEYS[3])
    redis.call('PEXPIRE', KEYS[2], left > 0 and left or ttl)
  end
end
return n
`

/**
 * Heartbeat: KEYS nodes epoch; ARGV node lifeMs. Marks this node alive; returns {was alive (0/1),
 * Redis' ms clock, up to 16 dead nodes, the store's epoch}. The node sweeps the dead ones' counts
 * (one channel's key per command, so it works on a cluster) and then removes them. The epoch
 * (`pk:{pk:nodes}:epoch`, on the slot of pk:nodes) is the second from which the store has held every
 * channel's record: a store that lost everything (a restart without persistence, FLUSHALL) lost it
 * and its nodes too, and the next heartbeat makes it again, later; "0" where nodes ran before it.
 */
export const HEARTBEAT = COMMON + `
local sec, nowms = clock()
-- the store's epoch: made by the first heartbeat on an empty store; a store that already has nodes
-- ran without one (an earlier version): its history has no known start (0)
local e = redis.call('GET', KEYS[2])
if not e then
  e = redis.call('EXISTS', KEYS[1]) == 1 and '0' or tostring(sec)
  redis.call('SET', KEYS[2], e)
end
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], nowms + tonumber(ARGV[2]), ARGV[1])
local alive = 0
if was and tonumber(was) > nowms then alive = 1 end
return {alive, nowms, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowms, 'LIMIT', 0, 16), e}
`

/**
 * maxSubscribersPerUser: this node's subscribers of one user, absolute, `n` of them (`k` of those
 * new since it last wrote, waiting for this answer). KEYS u (pk:u:<user>: node -> its count); ARGV
 * node n k limit. Every other node's field counts, a dead one's too until its sweep (the node
 * removes it, from its set pk:nu:<node>): never fewer than are held. Returns how many of the `k`
 * new ones fit under `limit` (0 = no limit: all), and writes `n` less those that did not.
 * Atomic, so concurrent subscriptions on several nodes are granted only up to the limit.
 */
export const USER = `
local n = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local granted = k
if limit > 0 and k > 0 then
  local others = 0
  local h = redis.call('HGETALL', KEYS[1])
  for i = 1, #h, 2 do
    if h[i] ~= ARGV[1] then others = others + (tonumber(h[i + 1]) or 0) end
  end
  if others + n > limit then granted = math.max(0, k - (others + n - limit)) end
  n = n - (k - granted)
end
if n > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], n)
  -- (kept while written to; one no node writes to any more, a day)
  redis.call('PEXPIRE', KEYS[1], 86400000)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return granted
`

/**
 * A revocation's row (lib/redis-engine.ts REVOKED_JTI_KEY, REVOKED_SUB_KEY): KEYS jtis users; ARGV
 * kind value held (a jti's exp, 0 for good; a user's second). Merged as each node merges its own
 * list (lib/auth.ts Revocations): the later second, the longer exp, for good over any exp; so two
 * nodes revoking the same token or user at once never leave the weaker row.
 */
export const REVOKE = `
local held = tonumber(ARGV[3])
if ARGV[1] == 'sub' then
  local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[2]))
  if cur == nil or cur < held then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
  return 1
end
local cur = redis.call('ZSCORE', KEYS[1], ARGV[2])
if held == 0 then
  redis.call('ZADD', KEYS[1], '+inf', ARGV[2])
elseif not cur or (cur ~= 'inf' and tonumber(cur) < held) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
end
return 1
`
