-- squall.context: state that belongs to one request, found from whichever of its coroutines runs.
--
-- Modules are shared by every request of a worker, the host recycles a request's coroutine for
-- later requests, and a squall.spawn task runs in a coroutine of its own. So per-request state
-- lives in a table per running coroutine: the host sets it when it starts a request and drops it
-- when the request ends; a task gets its parent's `request` table (one identity map for the
-- whole request) and starts inside the transaction its parent was in when it spawned it.
--
--   context.current().request   shared by the request's coroutines (squall.model's identity map)
--   context.current().tx        the innermost db.transaction this coroutine runs inside, or nil

local running, setmetatable = coroutine.running, setmetatable
local tnew = require "table.new"

local _M = {}

-- Weak keys: a coroutine the host drops (an abandoned task) takes its entry with it. The main
-- thread has no coroutine object in LuaJIT (running() is nil), so it gets a key of its own.
local of = setmetatable({}, { __mode = "k" })
local MAIN = {}

local function key()
  return running() or MAIN
end

-- The running coroutine's context. A coroutine the host did not start as a request or a task
-- (the app loader, `squall test`'s runner) gets one on first use, kept while it runs.
function _M.current()
  local k = key()
  local c = of[k]
  if not c then
    c = { request = {} }
    of[k] = c
  end
  return c
end

-- The request or task on `co` (default: the running coroutine) ended; the host will reuse it.
function _M.leave(co)
  co = co or key()
  if of[co] ~= nil then of[co] = nil end
end

-- The host starts a request on coroutine `co`: nothing of the previous request on it may leak in,
-- which is what leaving it does. The host passes `co` (coroutine.running() is not compiled by
-- LuaJIT, and calling it would end the trace of every request's entry, leaving the rest of the
-- request to the interpreter). The new state is made on first use (current), so a request that
-- never asks costs no table, and only a lookup here.
_M.begin_request = _M.leave

-- A fresh request state for the running coroutine (`squall test` between two tests).
function _M.reset()
  _M.current().request = {}
end

-- The running request's table under `name` (its identity map, its counters), made on first use
-- with `size` hash slots.
function _M.request_table(name, size)
  local req = _M.current().request
  local t = req[name]
  if not t then
    t = tnew(0, size or 0)
    req[name] = t
  end
  return t
end

-- What a task spawned now starts with: the same request, the same transaction.
function _M.inherit()
  local c = _M.current()
  return { request = c.request, tx = c.tx }
end

-- Runs in the new task's coroutine, before its function.
function _M.enter(c)
  of[key()] = c
end

return _M
