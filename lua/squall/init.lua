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
  if type(status) ~= "number" or status < 100 or status > 999 then
    error("squall: an HTTP status must be a number from 100 to 999", 2)
  end
  return setmetatable({ status = status, message = message, headers = headers }, HttpError)
end

-- Ends the request with `status`. A string message is the text body; a table is sent as JSON.
function _M.abort(status, message, headers)
  if type(status) ~= "number" or status < 100 or status > 999 then
    error("squall.abort: status must be a number from 100 to 999", 2)
  end
  error(setmetatable({ status = status, message = message, headers = headers }, HttpError), 2)
end

function _M.is_http_error(e)
  return getmetatable(e) == HttpError
end

request.set_abort(_M.abort)

-- ---- helpers -------------------------------------------------------------------------------

local gsub = string.gsub
local html_entities = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Escapes text for HTML element content and attribute values.
function _M.escape_html(s)
  return (gsub(tostring(s), "[&<>\"']", html_entities))
end

-- ---- tasks ---------------------------------------------------------------------------------

-- squall.core is the C host's module; required on first use so that pure modules (router,
-- request, response) stay loadable by plain busted.
local core
local function host()
  core = core or require "squall.core"
  return core
end

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
  -- The host fills in done, results and waiters itself if the task is stopped (fail_handle).
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

local from_handler = response.from_handler
local TEXT = response.TEXT

-- Runs the matching handler; returns status, content_type, body, headers.
function App:handle(req)
  local method = req.method
  local h, params = self.router:match(method, req.path)
  if h then
    if params then req.params = params end
    return from_handler(h(req))
  end
  if params then  -- the path exists, with other methods
    if method == "OPTIONS" then return 204, nil, "", { Allow = params } end
    return 405, TEXT, "Method Not Allowed\n", { Allow = params }
  end
  return 404, TEXT, "Not Found\n"
end

return _M
