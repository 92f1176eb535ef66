"""The shared budget's Lua scripts and Redis keys: the part that runs inside Redis.

Each script runs atomically on the Redis server and reads the time from its
``TIME``, so the hosts' clocks never matter. Times are integer microseconds
(exact in a Lua double until the year 2255); they go back to Redis through
``fmt`` because Lua's own number-to-string keeps only 14 digits.

The budget of one credential is five keys sharing one hash tag (so a Redis
Cluster keeps them in one slot and the scripts may touch them together):

``…:inflight``
    sorted set, request id -> lease deadline. A request counts while in
    flight; if its process goes silent past the deadline (it died), it counts
    as finished at the deadline.
``…:finished``
    sorted set, request id -> finish time. A finished request counts in a
    window of length ``W`` until ``finish + W``, because the server stamped
    it somewhere between its start and its finish (see ``_ratelog``).
``…:meta``
    hash: ``epoch`` (names this incarnation of the log, so processes notice a
    Redis that lost it), ``streak`` (foreground grants since the last
    background one, at most 2) and ``pause`` (no grant before this time:
    a 429 somewhere).
``…:waiting:fg``, ``…:waiting:bg``
    sorted sets, process token -> expiry: processes with foreground (resp.
    background) requests waiting for budget. While foreground requests wait,
    a background one is granted only after two foreground grants (``streak``),
    so polls get at most a third. Then it is the polls' turn: a refused
    foreground request is told to wake a little later than the polls (its
    answer's ``defer``), which take the next free request if they are there,
    and nothing is reserved if they are not.

Every write renews the keys' expiry to a lease plus the longest window, so an
idle credential leaves nothing behind.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "DISCARD",
    "GRANT",
    "PENALIZE",
    "RELEASE",
    "RENEW",
    "RESTORE",
    "budget_keys",
]

_PROLOGUE = """
local function fmt(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local inflight, finished, meta, fgwait, bgwait = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function touch(ttl)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
end

-- Leases that ran out become finishes at their deadline; finishes older than the
-- longest window count nowhere; waiting registrations expire.
local function tidy(horizon)
  local due = redis.call('ZRANGEBYSCORE', inflight, '-inf', fmt(now), 'WITHSCORES')
  for i = 1, #due, 2 do redis.call('ZADD', finished, due[i + 1], due[i]) end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', inflight, '-inf', fmt(now)) end
  redis.call('ZREMRANGEBYSCORE', finished, '-inf', fmt(now - horizon))
  redis.call('ZREMRANGEBYSCORE', fgwait, '-inf', fmt(now))
  redis.call('ZREMRANGEBYSCORE', bgwait, '-inf', fmt(now))
end

-- The n-th oldest finish still counted by a window of length len.
local function nth_finish(len, n)
  local e = redis.call('ZRANGEBYSCORE', finished, '(' .. fmt(now - len), '+inf',
                       'WITHSCORES', 'LIMIT', n - 1, 1)
  return tonumber(e[2])
end

-- When at most limit - need requests count in a window of length len, and how many
-- finished ones count now. Exact when the finished requests leaving suffice.
-- Otherwise a lower bound: the others are in flight or yet to start, and each
-- counts until a window after a finish still to come (a later start's finish
-- comes after the first moment one could start).
local function ready_at(len, limit, need, nin)
  local nfin = redis.call('ZCOUNT', finished, '(' .. fmt(now - len), '+inf')
  local excess = nin + nfin - limit + need
  if excess <= 0 then return now, nfin end
  if excess <= nfin then return nth_finish(len, excess) + len, nfin end
  if need == 1 then return now + len, nfin end
  return ready_at(len, limit, 1, nin) + len, nfin
end
"""

#: ARGV: id, background, token, more (of the same class wait here), short_len,
#: short_limit, long_len, long_limit, lease, known_epoch, margin, ttl_ms.
#: Returns {status, wait_us, now_us, long_left, epoch, defer}; status 1 granted,
#: 0 refused, -1 the log is not the one this process knew (restore its entries,
#: then ask again); defer 1: the next free request is the polls' turn.
GRANT = (
    _PROLOGUE
    + """
local id, background, token, more = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4] == '1'
local short_len, short_limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local long_len, long_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local lease, known, margin, ttl = tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]), ARGV[12]

local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = fmt(now) .. '-' .. id
  redis.call('HSET', meta, 'epoch', epoch)
end
if known ~= '' and known ~= epoch then
  touch(ttl)
  return {-1, 0, now, 0, epoch, 0}
end
tidy(math.max(short_len, long_len))
local nin = redis.call('ZCARD', inflight)
local streak = tonumber(redis.call('HGET', meta, 'streak') or '0')
local mine = fgwait
if background then mine = bgwait end
-- A poll leaves room for the waiting foreground requests whose turn comes first.
local need, defer = 1, 0
if background and streak < 2 then
  need = 1 + math.min(redis.call('ZCARD', fgwait), 2 - streak)
elseif not background and streak >= 2 and redis.call('ZCARD', bgwait) > 0 then
  defer = 1
end
local ready = math.max(now, tonumber(redis.call('HGET', meta, 'pause') or '0'))
local short_ready = ready_at(short_len, short_limit, need, nin)
local long_ready, nlong = ready_at(long_len, long_limit, need, nin)
ready = math.max(ready, short_ready, long_ready)
local left = long_limit - nin - nlong
if ready > now then
  redis.call('ZADD', mine, fmt(ready + margin), token)
  touch(ttl)
  return {0, ready - now, now, left, epoch, defer}
end
redis.call('ZADD', inflight, fmt(now + lease), id)
if background then
  redis.call('HSET', meta, 'streak', 0)
else
  redis.call('HSET', meta, 'streak', math.min(2, streak + 1))
end
if more then
  redis.call('ZADD', mine, fmt(now + margin), token)
else
  redis.call('ZREM', mine, token)
end
touch(ttl)
return {1, 0, now, left - 1, epoch, 0}
"""
)

#: ARGV: id, ttl_ms. The request got its response (or failed): it counts a window more.
#: Returns the finish time (µs).
RELEASE = (
    _PROLOGUE
    + """
redis.call('ZREM', inflight, ARGV[1])
redis.call('ZADD', finished, fmt(now), ARGV[1])
touch(ARGV[2])
return now
"""
)

#: ARGV: id. A grant whose request was never sent: it counts nowhere.
DISCARD = (
    _PROLOGUE
    + """
redis.call('ZREM', inflight, ARGV[1])
redis.call('ZREM', finished, ARGV[1])
return 1
"""
)

#: ARGV: id, lease, ttl_ms. A long request is still running: extend its lease.
#: Returns the new deadline (µs), or 0 if the request is no longer in flight.
RENEW = (
    _PROLOGUE
    + """
local deadline = redis.call('ZSCORE', inflight, ARGV[1])
if not deadline then return 0 end
local renewed = math.max(tonumber(deadline), now + tonumber(ARGV[2]))
redis.call('ZADD', inflight, fmt(renewed), ARGV[1])
touch(ARGV[3])
return renewed
"""
)

#: ARGV: short_len, short_limit, long_len, long_limit, retry_after (µs, 0 for none),
#: ttl_ms. A 429: pause every grant of the fleet, as SlidingLog.penalize does.
#: Returns the pause from now (µs).
PENALIZE = (
    _PROLOGUE
    + """
local short_len, short_limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local long_len, long_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local retry_after = tonumber(ARGV[5])
tidy(math.max(short_len, long_len))
local nin = redis.call('ZCARD', inflight)
local nfin = redis.call('ZCOUNT', finished, '(' .. fmt(now - long_len), '+inf')
local pause = now + short_len
if nfin > 0 and nin + nfin >= long_limit - short_limit then
  -- Less than a short window's budget left: the long window is the likely culprit.
  pause = math.max(pause, nth_finish(long_len, math.min(short_limit, nfin)) + long_len)
end
if retry_after > 0 then pause = math.max(pause, now + math.min(retry_after, long_len)) end
local current = tonumber(redis.call('HGET', meta, 'pause') or '0')
if pause > current then redis.call('HSET', meta, 'pause', fmt(pause)) end
touch(ARGV[6])
return pause - now
"""
)

#: ARGV: epoch, ttl_ms, then (id, 'i' in flight | 'f' finished, deadline or finish µs)
#: triples. A process puts its own recent requests back into a log Redis lost.
#: Returns 1, or 0 if the log changed again (ask for a grant to learn its epoch).
RESTORE = (
    _PROLOGUE
    + """
if redis.call('HGET', meta, 'epoch') ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 3 do
  local id, at = ARGV[i], ARGV[i + 2]
  if ARGV[i + 1] == 'f' then
    redis.call('ZREM', inflight, id)
    redis.call('ZADD', finished, at, id)
  elseif not redis.call('ZSCORE', finished, id) then
    redis.call('ZADD', inflight, at, id)
  end
end
touch(ARGV[2])
return 1
"""
)

_PREFIX = "thanx_async:budget"


def budget_keys(*, client_id: str | None = None, key: str | None = None) -> list[str]:
    """The five keys of one budget, in the order the scripts take them.

    The hash tag is the SHA-256 of the client id (the id itself stays out of
    Redis), or ``key`` as given.

    Raises:
        ValueError: neither or both given, or ``key`` holds a brace (it would break the tag).
    """
    if (client_id is None) == (key is None):
        raise ValueError("pass exactly one of client_id and key")
    if key is None:
        assert client_id is not None  # for mypy: exactly one is set
        tag = hashlib.sha256(client_id.encode()).hexdigest()[:32]
    else:
        if not key or "{" in key or "}" in key:
            raise ValueError("key must be a non-empty string without braces")
        tag = key
    parts = ("inflight", "finished", "meta", "waiting:fg", "waiting:bg")
    return [f"{_PREFIX}:{{{tag}}}:{part}" for part in parts]
