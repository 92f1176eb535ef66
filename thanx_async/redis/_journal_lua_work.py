"""The shared ledger's work scripts: admit, seal, split, accept, finish, report, forget, check.

See :mod:`._journal_lua` for the keys they use and the prologue they share.
"""

from __future__ import annotations

from thanx_async.redis._journal_lua import PROLOGUE

__all__ = ["ACCEPTED", "ADMIT", "CHECK", "FINISHED", "FORGET", "REPORTED", "SEAL", "SPLIT"]

#: ARGV[6] dedupe window (ms), then per item: digest, identity.
#: Per item: its new id, 'e' an unfinished item of the key (anyone's), 'r' its
#: recorded result. Atomic: one key is one item fleet-wide.
ADMIT = (
    PROLOGUE
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
    PROLOGUE
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
    PROLOGUE
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
if #gone > 0 then redis.call('PUBLISH', P .. 'events', 'x ' .. runs(gone)) end
return remember('b' .. table.concat(bids, ','))
"""
)

#: ARGV[6] batch, ARGV[7] job id. Idempotent; harmless from any process (the
#: same key is the same job). A finished or vanished batch is left alone.
ACCEPTED = (
    PROLOGUE
    + """
local bkey = P .. 'b:' .. ARGV[6]
local state = redis.call('HGET', bkey, 's')
if state and state ~= 'done' then redis.call('HSET', bkey, 's', 'accepted', 'j', ARGV[7]) end
return 1
"""
)

#: ARGV[6] batch, ARGV[7] final job JSON, ARGV[8] dedupe window (ms). Idempotent:
#: the first record of a batch's end stands (every process follows the same job).
#: Its items answer resubmissions (and expire) from now on; the batch and its
#: item list stay, in its owner's 'ob' set, until REPORTED.
FINISHED = (
    PROLOGUE
    + """
local bid, window = ARGV[6], ARGV[8]
local bkey = P .. 'b:' .. bid
local state = redis.call('HGET', bkey, 's')
if not state or state == 'done' then return 0 end
redis.call('HSET', bkey, 's', 'done', 'r', ARGV[7], 'f', fmt(now))
redis.call('HDEL', bkey, 'body')
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
redis.call('PUBLISH', P .. 'events', 'f ' .. bid .. ' ' .. runs(ids))
return 1
"""
)

#: ARGV[6] batch, ARGV[7] dedupe window (ms). The finished batch's outcomes were
#: handed over: it leaves its owner's work ('ob'), its item list goes, and the
#: batch expires as its items do (a window after it finished; at once if that
#: passed). Idempotent; a no-op for an unfinished or vanished batch; from any
#: process (a fenced one reports what it handed to its own callers).
#: 1 if this call reported it, else 0.
REPORTED = (
    PROLOGUE
    + """
local bid = ARGV[6]
local bkey = P .. 'b:' .. bid
local b = redis.call('HMGET', bkey, 's', 'o', 'f')
if b[1] ~= 'done' then return 0 end
if redis.call('SREM', P .. 'ob:' .. b[2], bid) == 0 then return 0 end
redis.call('DEL', P .. 'bi:' .. bid)
redis.call('PEXPIREAT', bkey, fmt(tonumber(b[3]) + tonumber(ARGV[7])))
return 1
"""
)

#: ARGV[6] batch ('' for none), then item ids. Drops the items this process
#: owns (unsealed, or in a batch it owns) and the batch if it owns it; the
#: rest belongs to an adopter and is left alone. Returns how many were dropped.
FORGET = (
    PROLOGUE
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
if #gone > 0 then redis.call('PUBLISH', P .. 'events', 'x ' .. runs(gone)) end
return #gone
"""
)

#: The item ids: per item 'x' gone, 'w' unfinished, or its recorded result.
CHECK = (
    PROLOGUE
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
