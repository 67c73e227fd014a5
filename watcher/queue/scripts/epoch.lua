--[[ epoch.lua: the marker by which watcher notices that Redis forgot an app's queue (restarted
without persistence, failed over to an empty replica, flushed), and what it puts back then
(watcher/queue/continuity.py). One operation.

KEYS
  1 epoch    the app's marker: a random string this host also keeps beside its state
  2 seq      the job id counter (queue.lua)
  3 paused   the pause hash (suspension.py)
  4 waiting  the queue's list of waiting job ids (queue.lua)
  5 wake     the list an idle worker blocks on (BLPOP)
  6 awaiting the id of the job awaiting promotion (queue.lua)
ARGV
  1 op       the operation; then its own arguments, named by its function's parameters below
]]

local epoch, seq, paused, waiting, wake, awaiting = unpack(KEYS)
local ops = {}

-- Job `fields` (its hash, JSON; key prefix `jobs`) back in Redis unless its key exists: its id,
-- or nil.
local function put_back(jobs, fields)
  local job = cjson.decode(fields)
  if redis.call('EXISTS', jobs .. job.id) == 1 then return nil end
  for name, value in pairs(job) do redis.call('HSET', jobs .. job.id, name, value) end
  return job.id
end

-- Redis holds the marker `known` (this host's; '' when it has none) or gets `fresh`. Unless
-- Redis holds `known`, the id counter is raised to `floor` (ids up to it may have been handed
-- out). Redis holding `known` still has its own counter, which is truthful: raising it then
-- would skip the rest of the host's reserved block at every new process's first look (a
-- `status`, a pool's child), not only after a loss. When the marker is gone although this host
-- knew one, Redis forgot: the host's copies go back, each unless Redis already has one: the
-- pause (`pause`, JSON, '' for none; `pause_until_ms`, '' when until resumed), the waiting job
-- (`jobs` prefix, `job` its hash as JSON, '' for none) and the job awaiting promotion (`awaited`,
-- its hash as JSON, '' for none; sent only while the host's state still holds its wait).
-- Reply {outcome, the marker now, pause restored '1'/'0', job restored (id or ''), awaited job
-- restored (id or '')}: outcome 'same' (Redis holds `known`), 'other' (Redis holds another
-- marker: set by a process that does not share this host's copy, or this host had none), 'new'
-- (no marker anywhere yet: a first start), 'lost' (Redis forgot).
function ops.ensure(known, fresh, floor, pause, pause_until_ms, jobs, job, awaited)
  local now = redis.call('GET', epoch)
  if now and now == known then return {'same', now, '0', '', ''} end
  if tonumber(redis.call('GET', seq) or '0') < tonumber(floor) then redis.call('SET', seq, floor) end
  if now then return {'other', now, '0', '', ''} end
  redis.call('SET', epoch, fresh)
  if known == '' then return {'new', fresh, '0', '', ''} end
  local restored_pause, restored_job, restored_awaited = '0', '', ''
  if pause ~= '' and redis.call('EXISTS', paused) == 0 then
    for name, value in pairs(cjson.decode(pause)) do redis.call('HSET', paused, name, value) end
    if pause_until_ms ~= '' then redis.call('PEXPIREAT', paused, pause_until_ms) end
    restored_pause = '1'
  end
  if job ~= '' and redis.call('LLEN', waiting) == 0 then
    local id = put_back(jobs, job)
    if id then
      redis.call('RPUSH', waiting, id)
      redis.call('LPUSH', wake, id)
      redis.call('LTRIM', wake, 0, 0)
      restored_job = id
    end
  end
  if awaited ~= '' and not redis.call('GET', awaiting) then
    local id = put_back(jobs, awaited)
    if id then
      redis.call('SET', awaiting, id)
      restored_awaited = id
    end
  end
  return {'lost', fresh, restored_pause, restored_job, restored_awaited}
end

return ops[ARGV[1]](unpack(ARGV, 2))
