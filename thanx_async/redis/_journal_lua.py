"""The shared ledger's Lua scripts and Redis keys: the part of RedisJournal that runs in Redis.

Every key of one journal starts with ``thanx_async:journal:{<name>}:`` (``P``
below): one hash tag, so a Redis Cluster keeps them in one slot and a script
may touch any of them. Each script declares ``P..'leases'`` as its key and
gets ``P`` as its first argument to build the others.

``P..'ids'``, ``P..'bids'``
    counters (``INCR``) giving item and batch ids: positive, fleet-unique,
    and never given twice: a missing counter starts from the clock (µs).
``P..'k:'..digest``
    string, the key index: (partition, identifier value, dedupe key) -> the
    id of its one item. ``digest`` is 32 hex digits of a SHA-256 of the key,
    computed by the client (no personal data in key names).
``P..'i:'..id``
    hash, one item: ``k`` its digest (until it finished); once sealed ``b``
    its batch and ``p`` its position there. Kept small (a listpack), because
    it outlives its work for the dedupe window.
``P..'u:'..token``
    hash, the owner's unsealed items: id -> identity (the JSON array
    ``[merchant, campaign, variant, type, value, dedupe key or null]``).
``P..'ob:'..token``
    set, the owner's unfinished batches.
``P..'b:'..bid``
    hash, one batch: ``m`` partition, ``k`` idempotency key, ``body`` the
    exact bytes (until it finished), ``n`` its size, ``s`` state (``sealed``,
    ``accepted``, ``done``), ``j`` job id, ``r`` final job JSON, ``f``
    finish time (ms, Redis clock), ``o`` its owner.
``P..'bi:'..bid``
    list, the batch's items in position order, each ``'<id> <identity>'``
    (until it finished).
``P..'leases'``
    sorted set, owner token -> lease expiry (ms, Redis clock).
``P..'gens'``
    hash, stable instance name -> its last generation (``instance#gen`` is
    the token of one incarnation).
``P..'r:'..opid``
    string, the reply of a non-idempotent script (admit, seal, split, claim),
    kept for a while (a minute or more; a claim an hour), so a retry after a
    lost reply gets the same answer instead of running twice.
``P..'events'``
    pub/sub channel: ``f <bid> <id,id,...>`` when a batch finished (its items
    in position order), ``x <id,id,...>`` when items were forgotten.

Ownership: an unsealed item is its owner's while in the owner's ``u`` hash; a
batch (and its items) is the owner's named by its ``o``. Adoption moves the
``u`` hash and the ``ob`` set to the adopter; a seal checks that its items are
still in its owner's ``u`` hash.

Finished work expires: ``finished`` sets an expiry of ``dedupe_window`` on the
batch, its items and their key index entries, and drops what only unfinished
work needs (body, item list, the items' digests). Unfinished work never expires.

Times come from Redis's ``TIME`` (ms), so the hosts' clocks never matter.
Numbers go back to Redis through ``fmt`` (Lua's own conversion keeps 14 digits).
"""

from __future__ import annotations

__all__ = [
    "ACCEPTED",
    "ADMIT",
    "CHECK",
    "CLAIM",
    "FINISHED",
    "FORGET",
    "READ",
    "REGISTER",
    "RELEASE",
    "RENEW",
    "SEAL",
    "SPLIT",
]

#: ARGV[1] prefix, ARGV[2] this process's token, ARGV[3] operation id ('' for
#: none), ARGV[4] lease (ms), ARGV[5] how long to keep its reply (ms); KEYS[1]
#: the leases. Every script starts with it; "ARGV[6]" below is its first own.
_PROLOGUE = """
local P, me, opid, lease, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local LEASES, MINE = KEYS[1], P .. 'u:' .. ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function fmt(x) return string.format('%.0f', x) end

-- Variadic commands on long lists, in slices (Lua's unpack has a stack limit).
local function each(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

-- A new id from a counter. A missing counter (a new ledger, or one Redis lost)
-- starts from the clock in microseconds: above any id given before, so an id is
-- never given twice, even across a Redis that lost its data (2^53 is year 2255).
local function next_id(key)
  if redis.call('EXISTS', key) == 0 then redis.call('SET', key, fmt(now * 1000)) end
  return fmt(redis.call('INCR', key))
end

-- The reply of this operation if it already ran (a retry after a lost reply).
local function replay()
  if opid == '' then return false end
  return redis.call('GET', P .. 'r:' .. opid)
end
local function remember(reply)
  if opid ~= '' then redis.call('SET', P .. 'r:' .. opid, reply, 'PX', keep) end
  return reply
end

-- A process that writes is alive: (re)take its lease. After an adoption this
-- starts it afresh, with none of its old work (that moved to the adopter).
local function alive()
  redis.call('ZADD', LEASES, fmt(now + lease), me)
end

-- Drop one item that issued nothing: its hash, its key index entry (if still
-- its own), its place among this process's unsealed items. Whether it existed.
local function drop_item(id)
  local ikey = P .. 'i:' .. id
  local digest = redis.call('HGET', ikey, 'k')
  if not digest then return false end
  local kkey = P .. 'k:' .. digest
  if redis.call('GET', kkey) == id then redis.call('DEL', kkey) end
  redis.call('DEL', ikey)
  redis.call('HDEL', MINE, id)
  return true
end

-- Whether this process owns an item: unsealed here, or in a batch it owns.
local function mine(id)
  if redis.call('HEXISTS', MINE, id) == 1 then return true end
  local bid = redis.call('HGET', P .. 'i:' .. id, 'b')
  return bid and redis.call('HGET', P .. 'b:' .. bid, 'o') == me
end

-- A new batch of items given as {id, identity} pairs; its id.
local function new_batch(partition, key, body, members)
  local bid = next_id(P .. 'bids')
  local entries = {}
  for pos, member in ipairs(members) do
    entries[pos] = member[1] .. ' ' .. member[2]
    redis.call('HSET', P .. 'i:' .. member[1], 'b', bid, 'p', pos - 1)
  end
  redis.call('HSET', P .. 'b:' .. bid, 'm', partition, 'k', key, 'body', body,
             'n', #members, 's', 'sealed', 'o', me)
  each('RPUSH', P .. 'bi:' .. bid, entries)
  redis.call('SADD', P .. 'ob:' .. me, bid)
  return bid
end

-- A batch's items as {id, identity} pairs, in position order.
local function members_of(bid)
  local out = {}
  for _, entry in ipairs(redis.call('LRANGE', P .. 'bi:' .. bid, 0, -1)) do
    local space = string.find(entry, ' ', 1, true)
    out[#out + 1] = {string.sub(entry, 1, space - 1), string.sub(entry, space + 1)}
  end
  return out
end

-- Answers ('n<id>' new, 'e<id>' existing, 'w' waiting, 'x' gone, 'r<bid>:<pos>'
-- recorded) followed by (bid, final job JSON, size) of each batch they name.
local function with_batches(answers)
  local out, seen = {answers}, {}
  for bid in string.gmatch(answers, 'r(%d+):') do
    if not seen[bid] then
      seen[bid] = true
      local b = redis.call('HMGET', P .. 'b:' .. bid, 'r', 'n')
      out[#out + 1] = bid
      out[#out + 1] = b[1] or ''
      out[#out + 1] = b[2] or '0'
    end
  end
  return out
end
"""

#: ARGV[6] dedupe window (ms), then per item: digest, identity.
#: Per item: its new id, 'e' an unfinished item of the key (anyone's), 'r' its
#: recorded result. Atomic: one key is one item fleet-wide.
ADMIT = (
    _PROLOGUE
    + """
local answers = replay()
if not answers then
  alive()
  local window = tonumber(ARGV[6])
  local out, fresh = {}, {}
  for i = 7, #ARGV, 2 do
    local digest = ARGV[i]
    local kkey = P .. 'k:' .. digest
    local id = redis.call('GET', kkey)
    local answer = false
    if id then
      local item = redis.call('HMGET', P .. 'i:' .. id, 'b', 'p')
      if not item[1] then
        if redis.call('EXISTS', P .. 'i:' .. id) == 1 then answer = 'e' .. id end
      else
        local b = redis.call('HMGET', P .. 'b:' .. item[1], 's', 'f')
        if b[1] == 'done' then
          if tonumber(b[2]) >= now - window then answer = 'r' .. item[1] .. ':' .. item[2] end
        elseif b[1] then
          answer = 'e' .. id
        end
      end
      -- Otherwise its result left the window (or expired): the key is issued anew.
    end
    if not answer then
      local new = next_id(P .. 'ids')
      redis.call('HSET', P .. 'i:' .. new, 'k', digest)
      redis.call('SET', kkey, new)
      fresh[#fresh + 1] = new
      fresh[#fresh + 1] = ARGV[i + 1]
      answer = 'n' .. new
    end
    out[#out + 1] = answer
  end
  for i = 1, #fresh, 1000 do
    redis.call('HSET', MINE, unpack(fresh, i, math.min(i + 999, #fresh)))
  end
  answers = remember(table.concat(out, ','))
end
return with_batches(answers)
"""
)

#: ARGV[6] partition, ARGV[7] idempotency key, ARGV[8] body, then the item ids in order.
#: 'b<bid>', or 'l<id,...>': those items are no longer this process's (nothing written).
SEAL = (
    _PROLOGUE
    + """
local cached = replay()
if cached then return cached end
alive()
local members, lost, ids = {}, {}, {}
for i = 9, #ARGV do
  local identity = redis.call('HGET', MINE, ARGV[i])
  if identity then
    members[#members + 1] = {ARGV[i], identity}
  else
    lost[#lost + 1] = ARGV[i]
  end
  ids[#ids + 1] = ARGV[i]
end
if #lost > 0 then return remember('l' .. table.concat(lost, ',')) end
local bid = new_batch(ARGV[6], ARGV[7], ARGV[8], members)
each('HDEL', MINE, ids)
return remember('b' .. bid)
"""
)

#: ARGV[6] the refused batch, ARGV[7] partition, ARGV[8] number of dropped items,
#: the dropped ids, then per part: key, body, count, its item ids.
#: 'b<bid,...>', or 'l<id,...>' (the batch is no longer this process's: nothing written).
SPLIT = (
    _PROLOGUE
    + """
local cached = replay()
if cached then return cached end
alive()
local old, partition, ndropped = ARGV[6], ARGV[7], tonumber(ARGV[8])
if redis.call('HGET', P .. 'b:' .. old, 'o') ~= me then
  local ids = {}
  for i = 9, 8 + ndropped do ids[#ids + 1] = ARGV[i] end
  local i = 9 + ndropped
  while i <= #ARGV do
    local count = tonumber(ARGV[i + 2])
    for j = i + 3, i + 2 + count do ids[#ids + 1] = ARGV[j] end
    i = i + 3 + count
  end
  return remember('l' .. table.concat(ids, ','))
end
local identity = {}
for _, member in ipairs(members_of(old)) do identity[member[1]] = member[2] end
local gone = {}
for i = 9, 8 + ndropped do
  if drop_item(ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
redis.call('DEL', P .. 'b:' .. old, P .. 'bi:' .. old)
redis.call('SREM', P .. 'ob:' .. me, old)
local bids = {}
local i = 9 + ndropped
while i <= #ARGV do
  local count = tonumber(ARGV[i + 2])
  local members = {}
  for j = i + 3, i + 2 + count do
    members[#members + 1] = {ARGV[j], identity[ARGV[j]] or 'null'}
  end
  bids[#bids + 1] = new_batch(partition, ARGV[i], ARGV[i + 1], members)
  i = i + 3 + count
end
if #gone > 0 then redis.call('PUBLISH', P .. 'events', 'x ' .. table.concat(gone, ',')) end
return remember('b' .. table.concat(bids, ','))
"""
)

#: ARGV[6] batch, ARGV[7] job id. Idempotent; harmless from any process (the
#: same key is the same job). A finished or vanished batch is left alone.
ACCEPTED = (
    _PROLOGUE
    + """
local bkey = P .. 'b:' .. ARGV[6]
local state = redis.call('HGET', bkey, 's')
if state and state ~= 'done' then redis.call('HSET', bkey, 's', 'accepted', 'j', ARGV[7]) end
return 1
"""
)

#: ARGV[6] batch, ARGV[7] final job JSON, ARGV[8] dedupe window (ms). Idempotent:
#: the first record of a batch's end stands (every process follows the same job).
FINISHED = (
    _PROLOGUE
    + """
local bid, window = ARGV[6], ARGV[8]
local bkey = P .. 'b:' .. bid
local b = redis.call('HMGET', bkey, 's', 'o')
if not b[1] or b[1] == 'done' then return 0 end
redis.call('HSET', bkey, 's', 'done', 'r', ARGV[7], 'f', fmt(now))
redis.call('HDEL', bkey, 'body')
redis.call('PEXPIRE', bkey, window)
redis.call('SREM', P .. 'ob:' .. b[2], bid)
local ids = {}
for _, member in ipairs(members_of(bid)) do
  local id = member[1]
  local ikey = P .. 'i:' .. id
  local digest = redis.call('HGET', ikey, 'k')
  if digest then
    redis.call('HDEL', ikey, 'k')
    redis.call('PEXPIRE', ikey, window)
    local kkey = P .. 'k:' .. digest
    if redis.call('GET', kkey) == id then redis.call('PEXPIRE', kkey, window) end
  end
  ids[#ids + 1] = id
end
redis.call('DEL', P .. 'bi:' .. bid)
redis.call('PUBLISH', P .. 'events', 'f ' .. bid .. ' ' .. table.concat(ids, ','))
return 1
"""
)

#: ARGV[6] batch ('' for none), then item ids. Drops the items this process
#: owns (unsealed, or in a batch it owns) and the batch if it owns it; the
#: rest belongs to an adopter and is left alone. Returns how many were dropped.
FORGET = (
    _PROLOGUE
    + """
local gone = {}
for i = 7, #ARGV do
  if mine(ARGV[i]) and drop_item(ARGV[i]) then gone[#gone + 1] = ARGV[i] end
end
local bid = ARGV[6]
if bid ~= '' and redis.call('HGET', P .. 'b:' .. bid, 'o') == me then
  redis.call('DEL', P .. 'b:' .. bid, P .. 'bi:' .. bid)
  redis.call('SREM', P .. 'ob:' .. me, bid)
end
if #gone > 0 then redis.call('PUBLISH', P .. 'events', 'x ' .. table.concat(gone, ',')) end
return #gone
"""
)

#: The item ids: per item 'x' gone, 'w' unfinished, or its recorded result.
CHECK = (
    _PROLOGUE
    + """
local out = {}
for i = 6, #ARGV do
  local ikey = P .. 'i:' .. ARGV[i]
  local item = redis.call('HMGET', ikey, 'b', 'p')
  local answer = 'x'
  if item[1] and redis.call('HGET', P .. 'b:' .. item[1], 's') == 'done' then
    answer = 'r' .. item[1] .. ':' .. item[2]
  elseif redis.call('EXISTS', ikey) == 1 then
    answer = 'w'
  end
  out[#out + 1] = answer
end
return with_batches(table.concat(out, ','))
"""
)

#: ARGV[6] stable instance name ('' for none: ARGV[2] is the token). Takes a
#: lease; returns {token, the previous incarnation's token or ''}.
REGISTER = (
    _PROLOGUE
    + """
local instance, token, previous = ARGV[6], me, ''
if instance ~= '' then
  local gen = redis.call('HINCRBY', P .. 'gens', instance, 1)
  token = instance .. '#' .. fmt(gen)
  if gen > 1 then previous = instance .. '#' .. fmt(gen - 1) end
end
redis.call('ZADD', LEASES, fmt(now + lease), token)
return {token, previous}
"""
)

#: Heartbeat. Returns 1 if the lease was held, 0 if it had been lost (adopted:
#: the process starts afresh).
RENEW = (
    _PROLOGUE
    + """
local held = redis.call('ZSCORE', LEASES, me)
alive()
if held then return 1 end
return 0
"""
)

#: A clean close: an owner with no work leaves; one with work lets it be adopted at once.
RELEASE = (
    _PROLOGUE
    + """
if redis.call('EXISTS', MINE, P .. 'ob:' .. me) == 0 then
  redis.call('ZREM', LEASES, me)
else
  redis.call('ZADD', LEASES, 0, me)
end
return 1
"""
)

#: ARGV[6] a token to take over even if its lease runs ('' for none: this
#: instance's previous incarnation). Takes over the work of one owner whose
#: lease expired (or the one named): removes its lease and moves its unsealed
#: items and unfinished batches to this process. Atomic, so exactly one
#: adopter gets each owner's work. '' if nobody was due, else
#: '<token> <item ids,...> <batch ids,...>'.
CLAIM = (
    _PROLOGUE
    + """
local cached = replay()
if cached then return cached end
alive()
local victim = false
local forced = ARGV[6]
if forced ~= '' and forced ~= me and (redis.call('ZSCORE', LEASES, forced)
    or redis.call('EXISTS', P .. 'u:' .. forced, P .. 'ob:' .. forced) > 0) then
  victim = forced
else
  local due = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. fmt(now), 'LIMIT', 0, 2)
  for _, token in ipairs(due) do
    if token ~= me then victim = token; break end
  end
end
if not victim then return remember('') end
redis.call('ZREM', LEASES, victim)
local ukey, bkey = P .. 'u:' .. victim, P .. 'ob:' .. victim
local pairs_ = redis.call('HGETALL', ukey)
local items = {}
for i = 1, #pairs_, 2 do items[#items + 1] = pairs_[i] end
for i = 1, #pairs_, 1000 do
  redis.call('HSET', MINE, unpack(pairs_, i, math.min(i + 999, #pairs_)))
end
local batches = redis.call('SMEMBERS', bkey)
for _, bid in ipairs(batches) do redis.call('HSET', P .. 'b:' .. bid, 'o', me) end
each('SADD', P .. 'ob:' .. me, batches)
redis.call('DEL', ukey, bkey)
return remember(victim .. ' ' .. table.concat(items, ',') .. ' ' .. table.concat(batches, ','))
"""
)

#: ARGV[6] number of items, the item ids, then batch ids. What recovery needs:
#: per unsealed item of this process {id, identity} (others left out), per
#: unfinished batch {id, partition, key, body, job id or '', {{id, identity}...}}
#: with only the items still there.
READ = (
    _PROLOGUE
    + """
local nitems = tonumber(ARGV[6])
local items, batches = {}, {}
for i = 7, 6 + nitems do
  local identity = redis.call('HGET', MINE, ARGV[i])
  if identity then items[#items + 1] = {ARGV[i], identity} end
end
for i = 7 + nitems, #ARGV do
  local bid = ARGV[i]
  local b = redis.call('HMGET', P .. 'b:' .. bid, 'm', 'k', 'body', 'j', 's')
  if b[1] and b[5] ~= 'done' then
    local members = {}
    for _, member in ipairs(members_of(bid)) do
      if redis.call('EXISTS', P .. 'i:' .. member[1]) == 1 then members[#members + 1] = member end
    end
    batches[#batches + 1] = {bid, b[1], b[2], b[3], b[4] or '', members}
  end
end
return {items, batches}
"""
)
