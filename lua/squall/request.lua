-- The request object handed to handlers.
--
-- The C host passes the raw parts; everything that costs work to compute (the decoded query,
-- cookies) is computed on first use and cached on the request table, so a handler pays only
-- for what it reads.

local cjson = require "cjson.safe"
local router = require "squall.router"

local type, rawget, rawset, setmetatable, tostring = type, rawget, rawset, setmetatable, tostring
local gsub, lower, sub, gmatch, match = string.gsub, string.lower, string.sub, string.gmatch, string.match
local unescape = router.unescape

local _M = {}

local function decode_form(s)
  local out = {}
  if s == nil or s == "" then return out end
  for pair in gmatch(s, "[^&;]+") do
    local k, v = match(pair, "^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k = unescape((gsub(k, "+", " ")))
    v = unescape((gsub(v, "+", " ")))
    local cur = out[k]
    if cur == nil then
      out[k] = v
    elseif type(cur) == "table" then
      cur[#cur + 1] = v
    else
      out[k] = { cur, v }
    end
  end
  return out
end
_M.decode_form = decode_form

-- Header names are stored lowercase by the host; this lets handlers use any case.
_M.headers_mt = {
  __index = function(t, k)
    if type(k) == "string" then
      local l = lower(k)
      if l ~= k then return rawget(t, l) end
    end
  end,
}

local methods = {}
local lazy = {
  query = function(req) return decode_form(req.query_string) end,
  params = function() return {} end,  -- a route without captures
}

local mt = {
  __index = function(req, k)
    local m = methods[k]
    if m then return m end
    local f = lazy[k]
    if f then
      local v = f(req)
      rawset(req, k, v)
      return v
    end
  end,
}

function _M.new(method, path, query_string, headers, body, http_version, remote_addr, remote_port)
  -- `params = nil` reserves a slot (the hash part gets 16, not 8), so that the router's params
  -- or a lazily computed field do not make LuaJIT rebuild the table; being nil, it still falls
  -- through to the lazy `{}` for routes without captures.
  return setmetatable({
    method = method, path = path, query_string = query_string, headers = headers, body = body,
    http_version = http_version, remote_addr = remote_addr, remote_port = remote_port, params = nil,
  }, mt)
end

-- Set by squall's init so that request methods can raise HTTP errors without a require cycle.
local abort
function _M.set_abort(fn) abort = fn end

function methods.json(req)
  local cached = rawget(req, "_json")
  if cached ~= nil then return cached end
  local body = req.body
  if body == "" then abort(400, "request body is empty, expected JSON") end
  local doc, err = cjson.decode(body)
  if doc == nil then abort(400, "malformed JSON: " .. tostring(err)) end
  rawset(req, "_json", doc)
  return doc
end

function methods.form(req)
  local cached = rawget(req, "_form")
  if cached then return cached end
  local form = decode_form(req.body)
  rawset(req, "_form", form)
  return form
end

-- multipart/form-data: fields and uploaded files (squall.multipart). Not multipart: 415; a
-- malformed body, too many parts or oversized part headers: 400.
function methods.multipart(req, opts)
  local cached = rawget(req, "_multipart")
  if cached then return cached end
  local multipart = require "squall.multipart"
  local boundary = multipart.boundary(req.headers["content-type"])
  if not boundary then abort(415, "expected a multipart/form-data body with a boundary") end
  local form, err = multipart.parse(req.body, boundary, opts)
  if not form then abort(400, "malformed multipart body: " .. err) end
  rawset(req, "_multipart", form)
  return form
end

function methods.cookie(req, name)
  local jar = rawget(req, "_cookies")
  if not jar then
    jar = {}
    local header = req.headers.cookie
    if header then
      for pair in gmatch(header, "[^;]+") do
        local k, v = match(pair, "^%s*([^=]-)%s*=%s*(.-)%s*$")
        if k and k ~= "" and jar[k] == nil then
          if sub(v, 1, 1) == '"' and sub(v, -1) == '"' and #v >= 2 then v = sub(v, 2, -2) end
          jar[k] = v
        end
      end
    end
    rawset(req, "_cookies", jar)
  end
  return jar[name]
end

function methods.header(req, name)
  return req.headers[name]
end

_M.methods = methods
return _M
