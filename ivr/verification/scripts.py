"""The Lua scripts of one-time codes: each a check-and-act in ONE Redis round trip.

A code's send count, its hash, the account's failures and its lockout all live under
the account's hash tag `{acct:<id>}`, so each script's keys are in one Redis Cluster
slot. Scripts run atomically, which is what WATCH/MULTI gave before, without the
extra round trips (issue 12). The in-process stand-in runs them with `lupa`.

Deadlines are stored as seconds since the epoch (the same text Python writes), and
compared as numbers; the caller passes `now`, so tests keep their own clock.
"""

from __future__ import annotations

from typing import Any

# KEYS: lockout, sends (zset), sends today, code (hash).
# ARGV: now, window start, sends per window, sends per day, window, send member, ttl,
#       then the code's fields as name, value pairs.
# Returns "locked", "rate_limited", or "ok" once the send is counted and the code stored.
SEND = """
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('GET', KEYS[1]) or '')
if locked and locked > now then return 'locked' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, ARGV[2])
local recent = redis.call('ZCARD', KEYS[2])
local today = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if recent >= tonumber(ARGV[3]) or today >= tonumber(ARGV[4]) then return 'rate_limited' end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 172800)
redis.call('DEL', KEYS[4])
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[4], ARGV[7])
return 'ok'
"""

# KEYS: lockout, code (hash), account failures, sends (zset).
# ARGV: now, the entered code's MAC, wrong entries per code, the code's cleanup TTL,
#       failures before lockout, lockout seconds.
# Returns {outcome, detail}: {"locked", failures}, {"expired", ""}, {"wrong", failures}
# or {"ok", stored MAC} once the code is used up and the failures and sends cleared.
# The MACs are compared over their whole length whatever differs (no early exit), so
# the time taken says nothing about how much matched; Python compares them again with
# hmac.compare_digest.
CHECK = """
local function same(a, b)
  if #a ~= #b then return false end
  local differ = 0
  for i = 1, #a do
    if a:byte(i) ~= b:byte(i) then differ = differ + 1 end
  end
  return differ == 0
end
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('GET', KEYS[1]) or '')
if locked and locked > now then return {'locked', ''} end
local found = redis.call('HMGET', KEYS[2], 'mac', 'expires', 'ticket')
local mac, expires, ticket = found[1], tonumber(found[2] or ''), found[3]
if not expires or expires <= now or (not mac and not ticket) then return {'expired', ''} end
if mac and same(mac, ARGV[2]) then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return {'ok', mac}
end
local wrong = redis.call('HINCRBY', KEYS[2], 'wrong', 1)
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
local failures = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 86400)
if wrong >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[2]) end
if failures >= tonumber(ARGV[5]) then
  redis.call('SET', KEYS[1], tostring(now + tonumber(ARGV[6])), 'EX', ARGV[6])
  redis.call('DEL', KEYS[3])
  return {'locked', tostring(failures)}
end
return {'wrong', tostring(failures)}
"""

# KEYS: lockout, code (hash).
# ARGV: now, the reservation's ticket, the new code's MAC, its deadline, its TTL.
# Returns "locked", "replaced" (the reservation is gone, or is another's), or "ok" once
# the reservation became the code (a second key press then reveals nothing).
REVEAL = """
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('GET', KEYS[1]) or '')
if locked and locked > now then return 'locked' end
local found = redis.call('HMGET', KEYS[2], 'ticket', 'expires')
local expires = tonumber(found[2] or '')
if found[1] ~= ARGV[2] or not expires or expires <= now then return 'replaced' end
redis.call('HDEL', KEYS[2], 'ticket')
redis.call('HSET', KEYS[2], 'mac', ARGV[3], 'expires', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 'ok'
"""


def text(value: Any) -> str:
    """A script's reply as text (bytes from a client that does not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)
