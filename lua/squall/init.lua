-- squall: the facade handlers require.
--
--   local squall = require "squall"
--   local app = squall.app()
--   app:get("/hello/:name", function(req) return "Hello, " .. req.params.name end)
--   return app

local router = require "squall.router"
local request = require "squall.request"
local response = require "squall.response"

local setmetatable, getmetatable, error, type, tostring = setmetatable, getmetatable, error, type, tostring

local _M = { _VERSION = "0.1.0" }

-- HTTP errors travel as error objects so that code deep inside a handler (req:json(), a
-- validation helper) can end the request with a status without threading return values.
local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e) return "HTTP " .. e.status .. ": " .. tostring(e.message) end

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
    req.params = params
    return from_handler(h(req))
  end
  if params then  -- the path exists, with other methods
    if method == "OPTIONS" then return 204, nil, "", { Allow = params } end
    return 405, TEXT, "Method Not Allowed\n", { Allow = params }
  end
  return 404, TEXT, "Not Found\n"
end

return _M
