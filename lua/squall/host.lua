-- The host's side of a request: the C bridge calls the function `load` returns once per request,
-- in a fresh (or recycled) coroutine, and reads back
--   status, content_type, body, headers, log_message
-- Errors never escape it: an HTTP error becomes its response, anything else a 500 whose
-- traceback goes to the error log (and into the body when config.debug is on).

local core = require "squall.core"
local squall = require "squall"
local request = require "squall.request"
local db = require "squall.db"

local type, tostring, xpcall, require, error = type, tostring, xpcall, require, error
local traceback = debug.traceback
local is_http_error = squall.is_http_error
local db_unavailable = db.is_unavailable
local request_new = request.new
local TEXT = "text/plain; charset=utf-8"

local _M = { headers_mt = request.headers_mt }

-- What the handler raised, as (http_error_or_nil, text for the log).
local function on_error(e)
  if is_http_error(e) then return e end
  if db_unavailable(e) then return { unavailable = true, log = traceback(tostring(e), 2) } end
  return traceback(tostring(e), 2)
end

function _M.load(app_module)
  local app = require(app_module)
  if type(app) ~= "table" or type(app.handle) ~= "function" then
    error("module '" .. app_module .. "' must return a squall app (squall.app()), got " .. type(app), 0)
  end
  local handle = app.handle
  local debug_mode = core.debug

  return function(method, path, query_string, headers, body, http_version, remote_addr, remote_port)
    local req = request_new(method, path, query_string, headers, body, http_version, remote_addr, remote_port)
    local ok, status, ctype, rbody, rheaders = xpcall(handle, on_error, app, req)
    if ok then return status, ctype, rbody, rheaders end
    local e = status
    if is_http_error(e) then
      local msg = e.message
      return e.status, TEXT, msg == nil and "" or tostring(msg), e.headers
    end
    if type(e) == "table" and e.unavailable then
      -- The database cannot serve now; the app is fine. The log keeps the cause.
      return 503, TEXT, "Service Unavailable\n", nil, e.log
    end
    if debug_mode then
      return 500, TEXT, "Internal Server Error\n\n" .. e .. "\n", nil, e
    end
    return 500, TEXT, "Internal Server Error\n", nil, e
  end
end

return _M
