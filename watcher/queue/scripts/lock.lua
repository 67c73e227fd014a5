--[[ lock.lua: the deploy lock of one app (watcher/queue/lock.py), one operation per call.

KEYS
  1 lock     the holder, JSON {token, fence, host, pid, purpose, job, since}, expiring after ttl
  2 fence    the grant counter: each grant's fencing token is larger than every earlier one
  3 waiting  the app's queue (queue.lua), read by `release`
  4 wake     the list an idle worker blocks on (BLPOP)
ARGV
  1 op       the operation; then its own arguments, named by its function's parameters below
]]

local lock, fence, waiting, wake = unpack(KEYS)
local ops = {}

-- The grant (token, fence) still holds the lock, and no grant came after it. The same lines
-- are in queue.lua, whose fenced writes need them too (a script cannot call another);
-- tests/unit/test_lock.py keeps the two copies equal.
local function owns(token, grant)
  local raw = redis.call('GET', lock)
  if not raw then return false end
  local holder = cjson.decode(raw)
  return holder.token == token and holder.fence == grant and redis.call('GET', fence) == grant
end

-- The lock for `holder` (JSON, without its fence) for `ttl_ms`: its fence, or nil when held.
function ops.grant(holder, ttl_ms)
  if redis.call('EXISTS', lock) == 1 then return false end
  local granted = redis.call('INCR', fence)
  local value = cjson.decode(holder)
  value.fence = tostring(granted)
  redis.call('SET', lock, cjson.encode(value), 'NX', 'PX', ttl_ms)
  return granted
end

-- 1 while the grant holds the lock, else 0 (the engine's guard).
function ops.check(token, grant)
  if owns(token, grant) then return 1 end
  return 0
end

-- Extend the grant's lock to `ttl_ms` from now: 1, or 0 when it is no longer the grant's.
function ops.renew(token, grant, ttl_ms)
  if owns(token, grant) then return redis.call('PEXPIRE', lock, ttl_ms) end
  return 0
end

-- Give the lock back (1; 0 when it was no longer the grant's), waking an idle worker at once
-- when a job waits.
function ops.release(token, grant)
  if not owns(token, grant) then return 0 end
  redis.call('DEL', lock)
  if redis.call('LLEN', waiting) > 0 then
    redis.call('LPUSH', wake, 'released')
    redis.call('LTRIM', wake, 0, 0)
  end
  return 1
end

-- Name the job the grant runs in its holder, for humans: 1, or 0 when it is no longer the grant's.
function ops.note(token, grant, job, purpose)
  if not owns(token, grant) then return 0 end
  local holder = cjson.decode(redis.call('GET', lock))
  holder.job = job
  holder.purpose = purpose
  return redis.call('SET', lock, cjson.encode(holder), 'KEEPTTL') and 1
end

-- Delete the lock whoever holds it: the holder it had (nil when free).
function ops.force()
  local raw = redis.call('GET', lock)
  redis.call('DEL', lock)
  return raw
end

return ops[ARGV[1]](unpack(ARGV, 2))
