-- Turning what a handler returned into (status, content_type, body, headers) for the host.
--
-- A handler returns `body`, `status, body` or `status, headers, body`; the number of values it
-- returned decides which, so `return 200, nil` and `return 200, hdrs, nil` mean what they say.

local json = require "squall.json"

local type, pairs, select, tostring, error = type, pairs, select, tostring, error
local lower = string.lower
local encode = json.encode

local _M = {}

local TEXT = "text/plain; charset=utf-8"
local JSON = "application/json"
_M.TEXT, _M.JSON = TEXT, JSON

local function has_content_type(headers)
  for k in pairs(headers) do
    if type(k) == "string" and lower(k) == "content-type" then return true end
  end
  return false
end
_M.has_content_type = has_content_type

local function finish(status, headers, body)
  local ctype
  local t = type(body)
  if t == "string" then
    ctype = TEXT
  elseif t == "table" then
    body, ctype = encode(body), JSON
  elseif t == "nil" then
    body, ctype = "", nil
  elseif t == "number" then
    body, ctype = tostring(body), TEXT
  else
    error("handler returned a " .. t .. " as the response body", 0)
  end
  if headers ~= nil then
    if type(headers) ~= "table" then
      error("handler returned a " .. type(headers) .. " where the headers table goes", 0)
    end
    if ctype and has_content_type(headers) then ctype = nil end
  end
  return status, ctype, body, headers
end

-- Normalizes a handler's return values.
function _M.from_handler(...)
  local n = select("#", ...)
  local a, b, c = ...
  if n <= 1 then
    if type(a) == "number" then return finish(a, nil, nil) end
    return finish(200, nil, a)
  end
  if type(a) ~= "number" then
    error("handler returned " .. n .. " values; the first must be the status code", 0)
  end
  if n == 2 then return finish(a, nil, b) end
  return finish(a, b, c)
end

return _M
