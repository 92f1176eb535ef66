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
    set, the owner's batches: unfinished, or finished and not yet reported.
``P..'b:'..bid``
    hash, one batch: ``m`` partition, ``k`` idempotency key, ``body`` the
    exact bytes (until it finished), ``n`` its size, ``s`` state (``sealed``,
    ``accepted``, ``done``), ``j`` job id, ``r`` final job JSON, ``f``
    finish time (ms, Redis clock), ``o`` its owner.
``P..'bi:'..bid``
    list, the batch's items in position order, each ``'<id> <identity>'``
    (until it was reported).
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
    pub/sub channel: ``f <bid> <ids>`` when a batch finished (its items),
    ``x <ids>`` when items were forgotten; ``<ids>`` as runs, ``5-9,12``.

Ownership: an unsealed item is its owner's while in the owner's ``u`` hash; a
batch (and its items) is the owner's named by its ``o``. Adoption moves the
``u`` hash and the ``ob`` set to the adopter; a seal checks that its items are
still in its owner's ``u`` hash.

Finished work expires: ``finished`` sets an expiry of ``dedupe_window`` on the
batch's items and their key index entries, and drops what only unfinished
work needs (body, the items' digests). The batch stays its owner's work (in
its ``ob`` set, with its item list) until ``reported``: its outcomes must reach
their callers or ``on_outcome`` first, even if the owner dies. ``reported``
then drops the item list and expires the batch a window after it finished.
Unfinished and unreported work never expires.

This module holds the key layout and what every script starts with;
:mod:`._journal_lua_work` has the scripts of the work itself,
:mod:`._journal_lua_lease` those of leases and adoption.

Times come from Redis's ``TIME`` (ms), so the hosts' clocks never matter.
Numbers go back to Redis through ``fmt`` (Lua's own conversion keeps 14 digits).
"""

from __future__ import annotations

__all__ = ["PROLOGUE"]

#: ARGV[1] prefix, ARGV[2] this process's token, ARGV[3] operation id ('' for
#: none), ARGV[4] lease (ms), ARGV[5] how long to keep its reply (ms); KEYS[1]
#: the leases. Every script starts with it; its own arguments start at ARGV[6].
PROLOGUE = """
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

-- Ids as runs for a message: '5-9,12' (a batch's items are mostly consecutive).
local function runs(ids)
  local out, first, last = {}, false, false
  local function flush()
    if not first then return end
    local run = fmt(first)
    if last ~= first then run = run .. '-' .. fmt(last) end
    out[#out + 1] = run
  end
  for _, id in ipairs(ids) do
    local n = tonumber(id)
    if last and n == last + 1 then
      last = n
    else
      flush()
      first, last = n, n
    end
  end
  flush()
  return table.concat(out, ',')
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
