--[[ queue.lua: every write to one app's deploy queue (watcher/queue/queue.py and promotion.py),
one operation per call. One script, not one per operation, so that the steps several operations
take, a job's end (which trims the history) and the fence check, are written once and still run
inside each operation's atomic call: a script cannot call another.

KEYS (the same for every operation)
  1 waiting   list of queued job ids, oldest first; coalescing keeps at most one
  2 running   list holding the id of the job a lock holder runs (at most one)
  3 seq       the job id counter
  4 history   list of finished job ids, newest first
  5 wake      list an idle worker blocks on (BLPOP): a new job or a requeue pushes to it
  6 last      id of the last job that ran to an end (succeeded or failed)
  7 paused    hash, present while the queue is paused (suspension.py)
  8 awaiting  id of the job awaiting promotion
  9 lock      the deploy lock's holder, JSON with its token and fence (lock.lua)
 10 fence     the lock's grant counter
 11 epoch     the marker of the queue's Redis (epoch.lua)
ARGV (every operation)
  1 op        the operation
  2 jobs      the job hashes' key prefix: a job's key is this and its id
  3 now       Unix time (the caller's clock, as every job time)
  4 keep      the history holds at most this many jobs ...
  5 max_age   ... none that finished more than this many seconds ago (their hashes go too)
  6 epoch     the marker the caller knows: another one in Redis (or none) means Redis forgot
              the queue, and every operation answers the error FORGOTTEN ('': not checked)
  7 ids       job ids above this are not reserved on the caller's host: a new job that would
              get one answers the error RESERVE <id> ('': no limit); see continuity.py
  8...        the operation's own arguments, named by its function's parameters below
Job keys are computed, so a Redis Cluster is not supported (one Redis, any host).
]]

local waiting, running, seq, history, wake, last, paused, awaiting, lock, fence, epoch = unpack(KEYS)
local jobs, now, keep, max_age = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local known, ids = ARGV[6], ARGV[7]
local ops = {}

-- The next job id, or nil and the refused id when it is not reserved on the caller's host.
local function next_id()
  local id = tonumber(redis.call('GET', seq) or '0') + 1
  if ids ~= '' and id > tonumber(ids) then return nil, id end
  redis.call('SET', seq, id)
  return tostring(id)
end

-- The grant (token, fence) still holds the lock, and no grant came after it. The same lines
-- are in lock.lua (a script cannot call another); tests/unit/test_lock.py keeps the copies equal.
local function owns(token, grant)
  local raw = redis.call('GET', lock)
  if not raw then return false end
  local holder = cjson.decode(raw)
  return holder.token == token and holder.fence == grant and redis.call('GET', fence) == grant
end

-- The grant owns job `id`: it holds the lock, and the job runs under it.
local function owns_job(token, grant, id)
  return owns(token, grant) and redis.call('HGET', jobs .. id, 'fence') == grant
    and redis.call('HGET', jobs .. id, 'status') == 'running'
end

-- Job `id` ends (`status`, with its `field` reason or message), newest in the history, which
-- is trimmed to `keep` jobs none older than `max_age` (the newest is always kept).
local function end_job(id, status, field, text)
  redis.call('HSET', jobs .. id, 'status', status, 'finished', now, field, text)
  redis.call('LPUSH', history, id)
  local oldest = tonumber(now) - max_age
  while redis.call('LLEN', history) > 1 do
    local ended = tonumber(redis.call('HGET', jobs .. redis.call('LINDEX', history, -1), 'finished') or '0')
    if redis.call('LLEN', history) <= keep and ended >= oldest then break end
    redis.call('DEL', jobs .. redis.call('RPOP', history))
  end
end

-- Wake an idle worker (one wake-up pending is enough).
local function wake_up(id)
  redis.call('LPUSH', wake, id)
  redis.call('LTRIM', wake, 0, 0)
end

-- New job `id` is the one that waits: whatever waited is superseded (`why`). Reply {id, 'queued'}.
local function wait_alone(id, why)
  for _, old in ipairs(redis.call('LRANGE', waiting, 0, -1)) do end_job(old, 'superseded', 'reason', why) end
  redis.call('DEL', waiting)
  redis.call('RPUSH', waiting, id)
  wake_up(id)
  return {id, 'queued'}
end

-- A deploy or rollback of `version` (`digest` and `repository` '' when unknown), coalesced.
-- `keep_newer` '1': a request that waits is newer than this one, so it stays and nothing is
-- added. `live_*`: what serves now, as the caller read it from the route file and state ('').
-- Reply {id, outcome}: 'already-queued' (id: the waiting job for that version), 'newer-queued'
-- (id: the newer one), 'live' (id: a new job, succeeded at once), 'queued'.
function ops.enqueue(version, digest, source, by, app, repository, keep_newer, live_version, live_digest, live_color)
  local function same(v, d)
    return v == version and (not d or d == '' or digest == '' or d == digest)
  end
  for _, id in ipairs(redis.call('LRANGE', waiting, 0, -1)) do
    local job = redis.call('HMGET', jobs .. id, 'version', 'digest')
    if same(job[1], job[2]) then return {id, 'already-queued'} end
  end
  if keep_newer == '1' and redis.call('LLEN', waiting) > 0 then
    return {redis.call('LINDEX', waiting, -1), 'newer-queued'}
  end
  local id, refused = next_id()
  if not id then return redis.error_reply('RESERVE ' .. refused) end
  redis.call('HSET', jobs .. id, 'id', id, 'app', app, 'version', version, 'source', source,
             'requested_by', by, 'created', now, 'status', 'queued', 'attempts', '0')
  if digest ~= '' then redis.call('HSET', jobs .. id, 'digest', digest) end
  if repository ~= '' then redis.call('HSET', jobs .. id, 'repository', repository) end
  if redis.call('LLEN', waiting) == 0 and redis.call('LLEN', running) == 0
     and live_version ~= '' and same(live_version, live_digest) then
    end_job(id, 'succeeded', 'message', version .. ' is already live on ' .. live_color .. ': nothing to do')
    return {id, 'live'}
  end
  return wait_alone(id, 'superseded by job ' .. id .. ' (' .. version .. ')')
end

-- Cancel waiting job `id` for `by`. Reply 'done', 'missing', or the status of a job not waiting.
function ops.cancel(id, by)
  local status = redis.call('HGET', jobs .. id, 'status')
  if not status then return 'missing' end
  if status ~= 'queued' then return status end
  redis.call('LREM', waiting, 0, id)
  end_job(id, 'cancelled', 'reason', 'cancelled by ' .. by)
  return 'done'
end

-- The next job for the grant's `worker`: first a job left in `running` (its worker lost the
-- lock), retaken unless a newer request waits (superseded) or it was taken `max_attempts` times
-- (failed); then the newest waiting job (older ones superseded), unless paused, or `frozen`
-- ('1': a scheduled freeze holds deploys, not rollbacks). Reply {'started', id}, {'recovered',
-- id, what became of its worker}, {'paused'}, {'frozen'}, {'empty'}, or {'lost'} (not the grant's).
function ops.take(token, grant, worker, max_attempts, frozen)
  if not owns(token, grant) then return {'lost'} end
  local orphan = redis.call('LINDEX', running, 0)
  if orphan then
    redis.call('LREM', running, 0, orphan)
    local job = redis.call('HMGET', jobs .. orphan, 'worker', 'phase', 'attempts')
    local was = 'its worker ' .. (job[1] or '?') .. ' stopped during ' .. (job[2] or 'start')
    local attempts = tonumber(job[3] or '0')
    if redis.call('LLEN', waiting) > 0 then
      end_job(orphan, 'superseded', 'reason', was .. ' and a newer request waits')
    elseif attempts >= tonumber(max_attempts) then
      end_job(orphan, 'failed', 'reason', was .. ' (attempt ' .. attempts .. ' of ' .. max_attempts .. '); not retried')
      redis.call('SET', last, orphan)
    else
      redis.call('HSET', jobs .. orphan, 'status', 'running', 'worker', worker, 'fence', grant,
                 'phase', 'recovering', 'attempts', tostring(attempts + 1))
      redis.call('RPUSH', running, orphan)
      return {'recovered', orphan, was}
    end
  end
  if redis.call('EXISTS', paused) == 1 then return {'paused'} end
  local ids = redis.call('LRANGE', waiting, 0, -1)
  if #ids == 0 then return {'empty'} end
  local id = ids[#ids]
  if frozen == '1' and redis.call('HGET', jobs .. id, 'source') ~= 'rollback' then return {'frozen'} end
  for i = 1, #ids - 1 do end_job(ids[i], 'superseded', 'reason', 'superseded by job ' .. id) end
  redis.call('DEL', waiting)
  local attempts = tonumber(redis.call('HGET', jobs .. id, 'attempts') or '0')
  redis.call('HSET', jobs .. id, 'status', 'running', 'worker', worker, 'fence', grant, 'started', now,
             'phase', 'starting', 'attempts', tostring(attempts + 1))
  redis.call('RPUSH', running, id)
  return {'started', id}
end

-- The grant's running job `id` enters `phase`: 1, or 0 when the job is no longer the grant's.
function ops.phase(token, grant, id, phase)
  if not owns_job(token, grant, id) then return 0 end
  redis.call('HSET', jobs .. id, 'phase', phase)
  return 1
end

-- The grant's running job `id` ended (`status`, `field` = `text`), with `audit`, a JSON object
-- of its other end fields (phases, before, after, digest, receipt): 1, or 0 when not the grant's.
-- A job that awaits promotion until `expires` (ISO) is the app's awaited job from the same
-- write, so that a `promote` read after its status always finds it.
function ops.finish(token, grant, id, status, field, text, audit, expires)
  if not owns_job(token, grant, id) then return 0 end
  redis.call('LREM', running, 0, id)
  for name, value in pairs(cjson.decode(audit)) do redis.call('HSET', jobs .. id, name, value) end
  end_job(id, status, field, text)
  redis.call('SET', last, id)
  if status == 'awaiting promotion' and expires ~= '' then
    redis.call('SET', awaiting, id)
    redis.call('HSET', jobs .. id, 'until', expires)
  end
  return 1
end

-- The grant's running job `id`, stopped (`why`), waits again at the head of the queue, or is
-- superseded when a newer request waits: 1, or 0 when not the grant's.
function ops.requeue(token, grant, id, why)
  if not owns_job(token, grant, id) then return 0 end
  redis.call('LREM', running, 0, id)
  if redis.call('LLEN', waiting) > 0 then
    end_job(id, 'superseded', 'reason', why .. ' and a newer request waits')
    return 1
  end
  redis.call('HSET', jobs .. id, 'status', 'queued')
  redis.call('HDEL', jobs .. id, 'phase', 'worker', 'fence', 'started')
  redis.call('LPUSH', waiting, id)
  wake_up(id)
  return 1
end

-- A promote or abort (`action`) of the job awaiting promotion, for `by`; a newer one of either
-- supersedes what waits. Reply {id, outcome}: 'queued', 'already-queued' (id: the one that
-- waits), 'none' (nothing awaits), 'newer-running' or 'newer-queued' (id: a deploy that will
-- supersede the awaiting job).
function ops.ask(action, by, app)
  local function control(id)
    local source = redis.call('HGET', jobs .. id, 'source')
    return source == 'promote' or source == 'abort'
  end
  local aw = redis.call('GET', awaiting)
  if not aw or redis.call('HGET', jobs .. aw, 'status') ~= 'awaiting promotion' then return {'', 'none'} end
  local run = redis.call('LINDEX', running, 0)
  if run and not control(run) then return {run, 'newer-running'} end
  for _, id in ipairs(redis.call('LRANGE', waiting, 0, -1)) do
    if not control(id) then return {id, 'newer-queued'} end
    if redis.call('HGET', jobs .. id, 'source') == action then return {id, 'already-queued'} end
  end
  local id, refused = next_id()
  if not id then return redis.error_reply('RESERVE ' .. refused) end
  redis.call('HSET', jobs .. id, 'id', id, 'app', app, 'version', redis.call('HGET', jobs .. aw, 'version'),
             'source', action, 'requested_by', by, 'created', now, 'status', 'queued', 'attempts', '0',
             'awaits', aw)
  return wait_alone(id, 'superseded by job ' .. id .. ' (' .. action .. ')')
end

-- The wait of job `id` ended (`status`, `field` = `text`), if it still awaited promotion: 1,
-- or 0 when the lock is no longer the grant's.
function ops.settle(token, grant, id, status, field, text)
  if not owns(token, grant) then return 0 end
  if redis.call('GET', awaiting) == id then redis.call('DEL', awaiting) end
  if redis.call('HGET', jobs .. id, 'status') ~= 'awaiting promotion' then return 1 end
  redis.call('HSET', jobs .. id, 'status', status, 'finished', now, field, text)
  return 1
end

-- Job `fields` (its hash, JSON), which ran when Redis forgot the queue, back in Redis: in
-- `running`, for the next lock holder to take over, unless the lock is held or a job runs (then
-- failed: `why`). Reply 'running', 'failed', or 'exists' (it is back already).
function ops.restore(fields, why)
  local job = cjson.decode(fields)
  if redis.call('EXISTS', jobs .. job.id) == 1 then return 'exists' end
  for name, value in pairs(job) do redis.call('HSET', jobs .. job.id, name, value) end
  if redis.call('EXISTS', lock) == 0 and redis.call('LLEN', running) == 0 then
    redis.call('HSET', jobs .. job.id, 'status', 'running')
    redis.call('RPUSH', running, job.id)
    return 'running'
  end
  end_job(job.id, 'failed', 'reason', why)
  redis.call('SET', last, job.id)
  return 'failed'
end

if known ~= '' and redis.call('GET', epoch) ~= known then
  return redis.error_reply('FORGOTTEN Redis does not hold the queue marker ' .. known)
end
return ops[ARGV[1]](unpack(ARGV, 8))
