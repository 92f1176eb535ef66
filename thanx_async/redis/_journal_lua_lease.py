"""The shared ledger's lease and adoption scripts (see :mod:`._journal_lua` for the keys).

A process takes a lease at open (``REGISTER``), renews it (``RENEW``) and drops
it at a clean close (``RELEASE``); any process takes over the work of one whose
lease expired (``CLAIM``, atomic: one adopter wins) and reads what it took
(``READ``).
"""

from __future__ import annotations

from thanx_async.redis._journal_lua import PROLOGUE

__all__ = ["CLAIM", "READ", "REGISTER", "RELEASE", "RENEW"]

#: ARGV[6] stable instance name ('' for none: ARGV[2] is the token). Takes a
#: lease; returns {token, the previous incarnation's token or ''}.
REGISTER = (
    PROLOGUE
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
    PROLOGUE
    + """
local held = redis.call('ZSCORE', LEASES, me)
alive()
if held then return 1 end
return 0
"""
)

#: A clean close: an owner with no work leaves; one with work (unreported batches
#: included) lets it be adopted at once.
RELEASE = (
    PROLOGUE
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
#: items and its batches (unfinished, or finished and not yet reported) to this
#: process. Atomic, so exactly one adopter gets each owner's work. '' if
#: nobody was due, else '<token> <item ids,...> <batch ids,...>'.
CLAIM = (
    PROLOGUE
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
#: per unsealed item of this process {id, identity} (others left out); per
#: unfinished batch {id, partition, key, body, job id or '', {{id, identity}...}}
#: with only the items still there; per finished batch not yet reported (still
#: in this process's 'ob' set) the same and its final job JSON as a 7th element,
#: with every item it was sealed with (list index = position) and body ''.
READ = (
    PROLOGUE
    + """
local nitems = tonumber(ARGV[6])
local items, batches = {}, {}
for i = 7, 6 + nitems do
  local identity = redis.call('HGET', MINE, ARGV[i])
  if identity then items[#items + 1] = {ARGV[i], identity} end
end
for i = 7 + nitems, #ARGV do
  local bid = ARGV[i]
  local b = redis.call('HMGET', P .. 'b:' .. bid, 'm', 'k', 'body', 'j', 's', 'r')
  if b[1] and b[5] ~= 'done' then
    local members = {}
    for _, member in ipairs(members_of(bid)) do
      if redis.call('EXISTS', P .. 'i:' .. member[1]) == 1 then members[#members + 1] = member end
    end
    batches[#batches + 1] = {bid, b[1], b[2], b[3], b[4] or '', members}
  elseif b[1] and redis.call('SISMEMBER', P .. 'ob:' .. me, bid) == 1 then
    -- Its items may have expired already (a window after the end): the list is the record.
    batches[#batches + 1] = {bid, b[1], b[2] or '', '', b[4] or '', members_of(bid), b[6]}
  end
end
return {items, batches}
"""
)
