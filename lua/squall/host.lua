-- The host's side of a request: the C bridge calls the function `load` returns once per request,
-- in a fresh (or recycled) coroutine, and reads back
--   status, content_type, body, headers, log_message
-- unless the handler streamed its response through `res` (res:start, res:write, res:finish): then
-- the C side ignores the rest and only log_message counts (an error raised after res:start()
-- closes the connection).
-- Errors never escape it: an HTTP error becomes its response, a database that cannot serve a
-- 503 logged in one line (repeats counted, not logged), anything else a 500 whose traceback
-- goes to the error log (and into the body when config.debug is on).

local core = require "squall.core"
local squall = require "squall"
local request = require "squall.request"
local response = require "squall.response"
local db = require "squall.db"
local context = require "squall.context"

local type, tostring, xpcall, error, rawget = type, tostring, xpcall, error, rawget
local traceback = debug.traceback
local is_http_error = squall.is_http_error
local db_unavailable = db.is_unavailable
local request_new = request.new
local TEXT, JSON = response.TEXT, response.JSON
local encode = require("squall.json").encode

local begin_request, leave = context.begin_request, context.leave

local _M = {}

-- Loading runs in a coroutine so that a module's top level may yield (a query to warm a cache).
-- The stock `require` is a C function, and a yield cannot cross it; this one calls the loader
-- from Lua and otherwise behaves the same (package.loaded, package.loaders, the same errors).
local loaded, loaders, concat, gsub, pcall = package.loaded, package.loaders, table.concat, string.gsub, pcall
local LOADING = {}

local function yieldable_require(name)
  if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected)", 2) end
  local m = loaded[name]
  if m == LOADING then error("loop or previous error loading module '" .. name .. "'", 2) end
  if m ~= nil then return m end
  local why = {}
  for i = 1, #loaders do
    local found, loader, extra = pcall(loaders[i], name)
    if not found then
      -- A searcher raises for a file that exists but does not compile; report it as the stock
      -- require would, without this function's position in front.
      error((gsub(tostring(loader), "^[^\n]-host%.lua:%d+: ", "")), 0)
    end
    if type(loader) == "function" then
      loaded[name] = LOADING
      local res = loader(name, extra)
      if res ~= nil then
        loaded[name] = res
      elseif loaded[name] == LOADING then
        loaded[name] = true
      end
      return loaded[name]
    elseif type(loader) == "string" then
      why[#why + 1] = loader
    end
  end
  error("module '" .. name .. "' not found:" .. concat(why), 2)
end

-- What the handler raised, as (http_error_or_nil, text for the log). A database that cannot
-- serve is the database's trouble, not a bug at this line of the app: one line, no traceback,
-- and a key under which repeats are counted instead of logged (see `throttle`).
local function on_error(e)
  if is_http_error(e) then return e end
  if db_unavailable(e) then
    return { unavailable = true, log = tostring(e),
             key = tostring(e.kind) .. "\0" .. tostring(e.code) .. "\0" .. tostring(e.message) }
  end
  return traceback(tostring(e), 2)
end

-- A coroutine the host runs waits for the host's event (a query, a timer); resumed by user
-- code it would run on with the wrong values and be resumed again by the host later.
local co_resume, is_task = coroutine.resume, core.is_task

local function guarded_resume(co, ...)
  if is_task(co) then error("cannot resume a coroutine that squall runs; use squall.spawn and task:wait", 2) end
  return co_resume(co, ...)
end

-- A streamed response (the handler's second argument). One object serves every request: the C
-- side (lua_request.c) acts on the request whose own coroutine calls it (and refuses any other
-- caller), and keeps the state, so that a handler that returns its response costs nothing more.
local res_start, res_write, res_finish, res_started = core.res_start, core.res_write, core.res_finish,
                                                      core.res_started
local Res = {}
local RES = setmetatable({}, { __index = Res })

-- res:start(status, headers): the head leaves with the first write, or when the handler waits.
function Res:start(status, headers)
  return res_start(status or 200, headers)
end

-- res:write(chunk): a string (or number); waits while the client is slow to read; raises when
-- it has gone.
function Res:write(chunk)
  return res_write(chunk)
end

function Res:finish()
  return res_finish()
end

-- Runs `app` for `req` as the host serves it; returns status, content_type, body, headers and,
-- for a 500 or 503, the message for the error log (and for a 503, the key its repeats share). Shared with squall.test.dispatch, so that an
-- in-process request ends the way a served one does (it passes no `res`).
-- status, content_type, body, headers, log message, repeat key, and whether the framework made
-- the answer (App:finish).
local function respond(app, req, debug_mode, res)
  -- The host did not read a body over limits.max_body_bytes: the answer is the framework's 413,
  -- which error handlers and after hooks see like any other.
  -- rawget: an absent field would go through the request's lazy-field __index on every request.
  if rawget(req, "too_large") then return 413, TEXT, "Content Too Large\n", nil, nil, nil, true end
  local ok, status, ctype, rbody, rheaders, framework = xpcall(app.handle, on_error, app, req, res)
  if ok then return status, ctype, rbody, rheaders, nil, nil, framework end
  local e = status
  if res and res_started() then
    -- The head has gone: no error response can follow. The C side logs this and closes.
    if type(e) == "table" and e.unavailable then e = e.log end
    return 0, nil, nil, nil, "error after res:start(): " .. tostring(e)
  end
  if is_http_error(e) then
    local msg = e.message
    if type(msg) == "table" then return e.status, JSON, encode(msg), e.headers, nil, nil, true end
    return e.status, TEXT, msg == nil and "" or tostring(msg), e.headers, nil, nil, true
  end
  if type(e) == "table" and e.unavailable then
    -- The database cannot serve now; the app is fine. The log keeps the cause.
    return 503, TEXT, "Service Unavailable\n", nil, e.log, e.key, true
  end
  if debug_mode then
    return 500, TEXT, "Internal Server Error\n\n" .. e .. "\n", nil, e, nil, true
  end
  return 500, TEXT, "Internal Server Error\n", nil, e, nil, true
end

-- The app's error handlers and after hooks see every response, errors included, except a
-- streamed one: its head (and maybe all of it) has gone, so there is nothing left to change. One
-- that fails itself gives a plain 500 (logged), never a loop through the handlers again.
local function run(app, req, debug_mode, res)
  local status, ctype, rbody, rheaders, log_message, repeat_key, framework = respond(app, req, debug_mode, res)
  -- Without after hooks only an error the framework made can need the app: the usual path pays
  -- one field test.
  if not (app.afters or (app.error_handlers and framework and status >= 400)) or (res and res_started()) then
    return status, ctype, rbody, rheaders, log_message, repeat_key
  end
  local ok, s2, c2, b2, h2 = xpcall(app.finish, on_error, app, req, status, ctype, rbody, rheaders, framework)
  if ok then return s2, c2, b2, h2, log_message, repeat_key end
  local why = type(s2) == "table" and (s2.log or tostring(s2.message)) or tostring(s2)
  return 500, TEXT, "Internal Server Error\n", nil,
         "in an after hook or error handler: " .. why .. (log_message and ("\n(answering: " .. log_message .. ")") or "")
end
_M.run = run

-- An outage fails every request at once, and a line for each would bury the log (tens of
-- thousands a second). The first request failing with an error is logged; the same error
-- (kind, code and message) again within WINDOW seconds is only counted, and the count is
-- logged as one line when the next such failure comes after the window (or a different one
-- comes). Per worker: each worker's Lua state has its own copy of this state.
local WINDOW = 1.0
local now, log = core.now, core.log
local format, min = string.format, math.min
local last_key, last_msg, since, repeats = nil, nil, 0, 0

local function flush_repeats(t)
  if repeats == 0 then return end
  log("error", format("db: %d more request%s failed with the same error in the last %.1fs: %s",
                      repeats, repeats == 1 and "" or "s", min(t - since, WINDOW), last_msg))
  repeats = 0
end

-- The message to log for this failure, or nil when it is counted instead.
local function throttle(key, msg)
  local t = now()
  if key == last_key and t - since < WINDOW then
    repeats = repeats + 1
    return nil
  end
  flush_repeats(t)
  last_key, last_msg, since = key, msg, t
  return msg
end

local function served(status, ctype, body, headers, log_message, repeat_key)
  if repeat_key then log_message = throttle(repeat_key, log_message) end
  return status, ctype, body, headers, log_message
end

-- Runs in the loader coroutine; returns the request entry point and the header metatable.
function _M.load(app_module)
  require = yieldable_require
  coroutine.resume = guarded_resume
  local app = require(app_module)
  if type(app) ~= "table" or type(app.handle) ~= "function" then
    error("module '" .. app_module .. "' must return a squall app (squall.app()), got " .. type(app), 0)
  end
  local debug_mode = core.debug

  return function(method, path, query_string, headers, body, http_version, remote_addr, remote_port, too_large, co)
    begin_request(co)
    local req = request_new(method, path, query_string, headers, body, http_version, remote_addr, remote_port)
    if too_large then req.too_large = true end
    local status, ctype, rbody, rheaders, log_message = served(run(app, req, debug_mode, RES))
    leave(co)
    return status, ctype, rbody, rheaders, log_message
  end, request.headers_mt
end

return _M
