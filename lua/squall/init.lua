-- squall: the facade handlers require.
--
--   local squall = require "squall"
--   local app = squall.app()
--   app:get("/hello/:name", function(req) return "Hello, " .. req.params.name end)
--   return app

local router = require "squall.router"
local context = require "squall.context"
local request = require "squall.request"
local response = require "squall.response"

local setmetatable, getmetatable, error, type, tostring = setmetatable, getmetatable, error, type, tostring

local _M = { _VERSION = "0.1.0" }

-- HTTP errors travel as error objects so that code deep inside a handler (req:json(), a
-- validation helper) can end the request with a status without threading return values.
local HttpError = {}
HttpError.__index = HttpError
-- A table message (a JSON body, such as squall.model's { errors = ... }) is shown as that JSON,
-- so a failing spec or a log says what the client was told.
HttpError.__tostring = function(e)
  local msg = e.message
  if type(msg) == "table" then
    local ok, text = pcall(require("cjson").encode, msg)
    if ok then msg = text end
  end
  return "HTTP " .. e.status .. ": " .. tostring(msg)
end

-- The error squall.abort raises, for code that adds fields of its own before raising it
-- (squall.model's validation errors: a 422 when uncaught, their `errors` readable when caught).
function _M.http_error(status, message, headers)
  -- 1xx are not final answers: the host would turn one into a 500.
  if type(status) ~= "number" or status < 200 or status > 999 or status ~= math.floor(status) then
    error("squall: an HTTP status must be a whole number from 200 to 999", 2)
  end
  return setmetatable({ status = status, message = message, headers = headers }, HttpError)
end

-- Ends the request with `status`. A string message is the text body; a table is sent as JSON.
function _M.abort(status, message, headers)
  if type(status) ~= "number" or status < 200 or status > 999 or status ~= math.floor(status) then
    error("squall.abort: status must be a whole number from 200 to 999", 2)
  end
  error(setmetatable({ status = status, message = message, headers = headers }, HttpError), 2)
end

function _M.is_http_error(e)
  return getmetatable(e) == HttpError
end

request.set_abort(_M.abort)

-- ---- helpers -------------------------------------------------------------------------------

-- squall.core is the C host's module; required on first use so that pure modules (router,
-- request, response) stay loadable by plain busted.
local core
local function host()
  core = core or require "squall.core"
  return core
end

-- Escapes text for HTML element content and attribute values (& < > " '); any value is first
-- made a string with tostring. The work is core.escape_html's (server/lua_core.c).
function _M.escape_html(s)
  if type(s) ~= "string" then s = tostring(s) end
  return host().escape_html(s)
end

-- ---- tasks ---------------------------------------------------------------------------------

-- config.lua's `settings` table (with `settings_env` applied): the same data in every worker and
-- every generation, each a copy of its own. Empty outside the host (plain busted).
do
  local ok, c = pcall(require, "squall.core")
  _M.settings = ok and c.settings or {}
end

local running, pcall, unpack, select = coroutine.running, pcall, unpack, select

local function pack(...) return { n = select("#", ...), ... } end

local Task = {}
local task_mt = { __index = Task }

-- Runs fn(...) in a new coroutine of the same request; it starts as soon as the caller waits
-- (a query, a sleep, task:wait()) or returns.
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then error("squall.spawn: expected a function", 2) end
  local c = host()
  -- The host fills in done, results and waiters itself if the task is stopped (spawned_abandoned,
  -- server/lua_core.c).
  local task = setmetatable({ done = false, waiters = {} }, task_mt)
  local ctx = context.inherit()
  c.spawn(task, function(...)
    context.enter(ctx)
    task.results = pack(pcall(fn, ...))
    context.leave()
    task.done = true
    local waiters = task.waiters
    task.waiters = nil
    for i = 1, #waiters do c.wake(waiters[i]) end
  end, ...)
  return task
end

-- Returns fn's results, or raises its error.
function Task:wait()
  if not self.done then
    local waiters = self.waiters
    waiters[#waiters + 1] = running()
    host().suspend()
  end
  local r = self.results
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

-- The outcome of the last reload: { ok, generation, attempts, error }.
function _M.reload_status()
  return host().reload_status()
end

-- Yields the request for `seconds` without blocking the worker.
function _M.sleep(seconds)
  if type(seconds) ~= "number" then error("squall.sleep: seconds must be a number", 2) end
  return host().sleep(seconds)
end

local App = {}
local app_mt = { __index = App }

function _M.app()
  return setmetatable({ router = router.new() }, app_mt)
end

function App:route(method, pattern, handler)
  self.router:add(method, pattern, handler)
  return self
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "options", "head" } do
  local upper = m:upper()
  App[m] = function(self, pattern, handler)
    self.router:add(upper, pattern, handler)
    return self
  end
end

local from_handler, has_content_type = response.from_handler, response.has_content_type
local find = string.find
local TEXT = response.TEXT

-- ---- middleware ----------------------------------------------------------------------------
--
-- before hooks run ahead of routing, in the order they were added; one that returns anything
-- answers the request instead of the route. after hooks and error handlers run on every response
-- the app gives, the framework's own (404, 405, a 400 from req:json(), a 500) included: the host
-- calls App:finish (squall.host run), so that a failing hook is still an ordinary 500.

local sub = string.sub

-- Whether a hook added under `prefix` applies to `path`: "/api" covers "/api" and "/api/x", not
-- "/apix".
local function covers(prefix, path)
  if not prefix then return true end
  local n = #prefix
  return sub(path, 1, n) == prefix and (#path == n or sub(path, n + 1, n + 1) == "/" or sub(prefix, n) == "/")
end

local function hook_args(method, a, b)
  if type(a) == "function" and b == nil then return nil, a end
  if type(a) ~= "string" or sub(a, 1, 1) ~= "/" or type(b) ~= "function" then
    error("app:" .. method .. "([prefix,] fn): prefix must be a path starting with /, fn a function", 3)
  end
  return a, b
end

-- app:before([prefix,] fn(req)): return nothing to go on, or a response (as a handler would).
function App:before(a, b)
  local prefix, fn = hook_args("before", a, b)
  self.befores = self.befores or {}
  self.befores[#self.befores + 1] = { prefix = prefix, fn = fn }
  return self
end

-- app:after([prefix,] fn(req, res)): res.status, res.headers (a table), res.body (a string) and
-- res.content_type can be read and changed in place.
function App:after(a, b)
  local prefix, fn = hook_args("after", a, b)
  self.afters = self.afters or {}
  self.afters[#self.afters + 1] = { prefix = prefix, fn = fn }
  return self
end

-- app:use([prefix,] m): a middleware table with `before` and/or `after` functions (squall.cors).
function App:use(a, b)
  local prefix, m = a, b
  if b == nil then prefix, m = nil, a end
  if type(m) ~= "table" or (m.before == nil and m.after == nil) then
    error("app:use([prefix,] middleware): middleware must be a table with before and/or after", 2)
  end
  if m.before then if prefix then self:before(prefix, m.before) else self:before(m.before) end end
  if m.after then if prefix then self:after(prefix, m.after) else self:after(m.after) end end
  return self
end

-- app:on_error(status or "*", fn(req, err)): the body (and status, headers) of an error answer
-- the framework gives or a handler raises (not one a handler returns).
-- err = { status = n, message = the framework's text }. Returning just a body keeps the status.
function App:on_error(status, fn)
  if not (status == "*" or (type(status) == "number" and status >= 400 and status <= 599)) or type(fn) ~= "function" then
    error('app:on_error(status, fn): status must be 400-599 or "*", fn a function', 2)
  end
  self.error_handlers = self.error_handlers or {}
  self.error_handlers[status] = fn
  return self
end

-- The response of the first before hook that gives one, as a handler's return values packed.
local function run_befores(self, req)
  local befores, path = self.befores, req.path
  for i = 1, #befores do
    local hk = befores[i]
    if covers(hk.prefix, path) then
      local r = pack(hk.fn(req))
      if r.n > 0 then return r end
    end
  end
  return nil
end

-- `extra`'s headers that `headers` lacks (names compared without case) added to `headers`.
local lower = string.lower
-- A copy of a headers table, array values (several Set-Cookie) copied too. Hooks change what
-- they are given: a handler's table may be a module-level constant returned to every request,
-- and one user's cookie must not stay in it for the next.
local function copy_headers(headers)
  local out = {}
  if headers then
    for k, v in pairs(headers) do
      if type(v) == "table" then
        local list = {}
        for i = 1, #v do list[i] = v[i] end
        v = list
      end
      out[k] = v
    end
  end
  return out
end

-- `headers` with `extra`'s headers that it lacks (names compared without case), as a new table.
local function merge_headers(headers, extra)
  local out = copy_headers(headers)
  local have = {}
  for k in pairs(out) do if type(k) == "string" then have[lower(k)] = true end end
  for k, v in pairs(extra) do
    if type(k) == "string" and not have[lower(k)] and lower(k) ~= "content-type" then out[k] = v end
  end
  return out
end

-- The response after error handlers and after hooks; the host calls it for every response.
-- `framework`: the answer is not one a handler or hook returned (a 404 or 405 of the router, or
-- an error raised: squall.abort, a 400 from req:json(), a 500): only those go to error handlers.
function App:finish(req, status, ctype, body, headers, framework)
  local handlers = self.error_handlers
  if handlers and framework and status >= 400 then
    local fn = handlers[status] or handlers["*"]
    if fn then
      local r = pack(fn(req, { status = status, message = body }))
      local before = headers
      if r.n == 1 and type(r[1]) ~= "number" then
        status, ctype, body, headers = from_handler(status, {}, r[1])
      elseif r.n > 0 then
        status, ctype, body, headers = from_handler(unpack(r, 1, r.n))
      end
      -- The framework's headers (Allow on a 405, say) stay unless the handler set its own.
      if before and r.n > 0 then headers = merge_headers(headers or {}, before) end
    end
  end
  local afters = self.afters
  if afters then
    -- `res` is made only for a path some hook covers: hooks under "/api" cost the other routes
    -- nothing but this loop.
    local res
    local path = req.path
    for i = 1, #afters do
      if covers(afters[i].prefix, path) then
        res = res or { status = status, content_type = ctype, body = body, headers = copy_headers(headers) }
        afters[i].fn(req, res)
      end
    end
    if res then
      status, ctype, body, headers = res.status, res.content_type, res.body, res.headers
      if type(body) ~= "string" then body = body == nil and "" or tostring(body) end
      -- A Content-Type header of the hook's wins; the host writes `ctype` as it is, so it must
      -- be one line.
      if ctype ~= nil and (has_content_type(headers) or type(ctype) ~= "string" or find(ctype, "[\r\n]")) then
        if has_content_type(headers) then
          ctype = nil
        else
          error("an after hook set res.content_type to " .. tostring(ctype) .. ": a string on one line", 0)
        end
      end
    end
  end
  return status, ctype, body, headers
end

-- squall.cors{...}: CORS middleware for app:use (lua/squall/cors.lua).
function _M.cors(opts)
  return require("squall.cors")(opts)
end

-- squall.sse(req, res [, opts]): server-sent events over the streamed res (lua/squall/sse.lua).
function _M.sse(req, res, opts)
  return require("squall.sse")(req, res, opts)
end

-- squall.session{...}: a session in a signed cookie, as req:session() (lua/squall/session.lua).
function _M.session(opts)
  return require("squall.session").new(opts)
end

-- Runs the matching handler; returns status, content_type, body, headers (which the host ignores
-- when the handler streamed its response through `res`, its second argument: nil for
-- squall.test.dispatch; before hooks do not get it).
function App:handle(req, res)
  if self.befores then
    local r = run_befores(self, req)
    if r then return from_handler(unpack(r, 1, r.n)) end
  end
  local method = req.method
  local h, params = self.router:match(method, req.path)
  if h then
    if params then req.params = params end
    return from_handler(h(req, res))
  end
  -- The fifth value marks the framework's own answers, which error handlers may reword.
  if params then  -- the path exists, with other methods
    if method == "OPTIONS" then return 204, nil, "", { Allow = params } end
    return 405, TEXT, "Method Not Allowed\n", { Allow = params }, true
  end
  return 404, TEXT, "Not Found\n", nil, true
end

return _M
