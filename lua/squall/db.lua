-- squall.db: queries that read like blocking code.
--
--   local rows = db.query("SELECT id, name FROM users WHERE id = ?", id)
--
-- Each call hands the statement to a database thread and yields the request's coroutine; the
-- worker keeps serving other requests and resumes this one with the result. Errors are raised as
-- error objects (code = MySQL errno, sqlstate, message, kind); catch expected ones with pcall.

local core = require "squall.core"
local cjson = require "cjson"
local context = require "squall.context"

local setmetatable, getmetatable, error, pcall, select, type, tostring =
  setmetatable, getmetatable, error, pcall, select, type, tostring
local unpack = unpack

local _M = {}

-- The same value as cjson.null, so a NULL column encodes as JSON null and its key stays.
_M.null = cjson.null

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  return ("%s (errno %s, sqlstate %s)"):format(tostring(e.message), tostring(e.code), tostring(e.sqlstate))
end
_M.Error = Error
if core.db_set_error_mt then core.db_set_error_mt(Error) end

function _M.is_error(e)
  return getmetatable(e) == Error
end

-- kind "unavailable" (cannot connect, connection lost) or "exhausted" (no connection free in
-- time): the request cannot be served now, which the host answers with 503.
function _M.is_unavailable(e)
  return getmetatable(e) == Error and (e.kind == "unavailable" or e.kind == "exhausted")
end

local query, exec = core.db_query, core.db_exec

-- Test isolation (squall.test): while set, every query without its own transaction joins this
-- one, so that a spec and the handlers it calls see the same uncommitted rows. A module-level
-- value on purpose: tests run one at a time, and nothing else sets it.
local shared

local function checked(level, ok, res)
  if not ok then error(res, level + 1) end
  return res
end

-- squall.test counts the statements a block runs (assert.queries) through this; nil otherwise,
-- so a query pays one upvalue test. A module-level value on purpose, like `shared`.
local observer

function _M._observe(fn)
  local previous = observer
  observer = fn
  return previous
end

function _M.query(sql, ...)
  if type(sql) ~= "string" then error("db.query: sql must be a string", 2) end
  if observer then observer(sql) end
  return checked(2, query(shared, sql, ...))
end

local Tx = {}
local tx_mt = { __index = Tx }

function Tx:query(sql, ...)
  if type(sql) ~= "string" then error("tx:query: sql must be a string", 2) end
  if observer then observer(sql) end
  return checked(2, query(self._h, sql, ...))
end

-- The innermost db.transaction the running code is inside (its own or, for a squall.spawn task,
-- its parent's when it spawned it), or nil: squall.model joins it without a `tx` being passed.
-- A task that outlives the block it was spawned in gets an error, not a quiet switch to
-- autocommit: what it writes was meant to commit or roll back with the block's writes.
function _M.current_transaction()
  local tx = context.current().tx
  if tx and tx._ended then
    error("db: the transaction this task was spawned in has ended; wait for the task inside the "
          .. "db.transaction block, or spawn it outside the block", 2)
  end
  return tx
end

-- Called after every rollback (of a transaction or a savepoint) in the coroutine that rolled
-- back. Rows read or written inside may not exist any more: squall.model forgets its identity
-- map. Registered by modules at load time, never per request.
local rollback_hooks = {}

function _M.on_rollback(fn)
  rollback_hooks[#rollback_hooks + 1] = fn
end

local function rolled_back()
  for i = 1, #rollback_hooks do rollback_hooks[i]() end
end

local function pack(...) return { n = select("#", ...), ... } end

-- While fn runs, tx is the running coroutine's current transaction (see current_transaction).
local function run(tx, fn, on_ok, on_err)
  local ctx = context.current()
  local outer = ctx.tx
  ctx.tx = tx
  local res = pack(pcall(fn, tx))
  ctx.tx = outer
  tx._ended = true
  if res[1] then
    -- A COMMIT that fails (the connection lost, a deadlock at commit, a timeout whose outcome is
    -- unknown) leaves nothing the block read or wrote that can be trusted: rollback hooks too.
    local ok, err = pcall(on_ok)
    if ok then return unpack(res, 2, res.n) end
    rolled_back()
    error(err, 0)
  end
  on_err()
  rolled_back()
  error(res[2], 0)
end

-- Nested transactions are savepoints on the same pinned connection. Names are unique per
-- state so that two nestings sharing one connection (a test and its handler) cannot collide.
local savepoints = 0

function Tx:transaction(fn)
  savepoints = savepoints + 1
  local sp = "squall_sp" .. savepoints
  checked(2, exec(self._h, "SAVEPOINT " .. sp))
  local inner = setmetatable({ _h = self._h }, tx_mt)
  return run(inner, fn,
    function() checked(3, exec(self._h, "RELEASE SAVEPOINT " .. sp)) end,
    function() exec(self._h, "ROLLBACK TO SAVEPOINT " .. sp) end)
end

-- Runs fn(tx) on one connection pinned for the whole block: commit when it returns, roll back
-- and re-raise when it raises. The connection goes back to the pool either way.
function _M.transaction(fn)
  if type(fn) ~= "function" then error("db.transaction: expected a function", 2) end
  if shared then return setmetatable({ _h = shared }, tx_mt):transaction(fn) end
  local h = checked(2, core.db_begin())
  local tx = setmetatable({ _h = h }, tx_mt)
  return run(tx, fn,
    function() checked(3, core.db_commit(h)) end,
    function() core.db_rollback(h) end)
end

-- Nested openings (t.rollback inside rollback_each) become savepoints on the same transaction.
local shared_depth = 0

function _M._begin_shared()
  shared_depth = shared_depth + 1
  if shared_depth > 1 then
    checked(2, exec(shared, "SAVEPOINT squall_shared" .. shared_depth))
    return
  end
  local ok, h = core.db_begin()
  if not ok then
    shared_depth = 0
    error(h, 2)
  end
  shared = h
end

function _M._end_shared()
  local depth = shared_depth
  if depth == 0 then return end
  shared_depth = depth - 1
  if depth > 1 then
    exec(shared, "ROLLBACK TO SAVEPOINT squall_shared" .. depth)
    rolled_back()
    return
  end
  local h = shared
  shared = nil
  core.db_rollback(h)
  rolled_back()
end

function _M.stats()
  return core.db_stats()
end

return _M
