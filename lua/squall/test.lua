-- squall.test: testing handlers from busted specs run by `squall test`.
--
--   local t = require "squall.test"
--   describe("notes", function()
--     t.rollback_each()                          -- every test in a transaction rolled back after
--     local client = t.client()
--     it("creates a note", function()
--       local res = client:post("/notes", { json = { title = "hi" } })
--       assert.equal(201, res.status)
--       assert.equal("hi", res:json().title)
--     end)
--   end)
--
-- The client sends real HTTP/1.1 over a loopback socket to the app served by the same process,
-- so a spec goes through the parser, the router, the handler and the response writer.

local core = require "squall.core"
local cjson = require "cjson.safe"
local db = require "squall.db"
local context = require "squall.context"
local request = require "squall.request"
local host = require "squall.host"
local json_encode = require("squall.json").encode

local type, pairs, tostring, error, setmetatable = type, pairs, tostring, error, setmetatable
local concat, sort, unpack, select, ipairs = table.concat, table.sort, unpack, select, ipairs
local function pack(...) return { n = select("#", ...), ... } end
local format, gsub, lower, byte = string.format, string.gsub, string.lower, string.byte

local _M = {}

local function escape(s)
  return (gsub(tostring(s), "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

-- Encodes a table as application/x-www-form-urlencoded (arrays give repeated keys), in key order
-- so that requests are reproducible.
local function encode_form(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for i = 1, #v do out[#out + 1] = escape(k) .. "=" .. escape(v[i]) end
    else
      out[#out + 1] = escape(k) .. "=" .. escape(v)
    end
  end
  return concat(out, "&")
end
_M.encode_form = encode_form

local Response = {}
Response.__index = Response

function Response:json()
  local doc, err = cjson.decode(self.body)
  if doc == nil then error("response body is not JSON (" .. tostring(err) .. "): " .. self.body, 2) end
  return doc
end

local Client = {}
Client.__index = Client

-- opts.headers: sent with every request of this client.
function _M.client(opts)
  return setmetatable({ port = core.listen_port(), headers = opts and opts.headers or {} }, Client)
end

local function has_header(h, name)
  for k in pairs(h) do
    if lower(k) == name then return true end
  end
end

-- The body opts asks for (raw `body`, `json` or `form`) and the Content-Type that goes with it.
local function body_of(opts)
  -- The host's encoder, so that a request body is written as handlers write responses.
  if opts.json ~= nil then return json_encode(opts.json), "application/json" end
  if opts.form ~= nil then return encode_form(opts.form), "application/x-www-form-urlencoded" end
  return opts.body or "", nil
end

-- opts: headers, query (table), body (raw string), json (table), form (table), timeout (s).
function Client:request(method, path, opts)
  opts = opts or {}
  method = method:upper()
  local headers = {}
  for k, v in pairs(self.headers) do headers[k] = v end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body, ctype = body_of(opts)
  if ctype and not has_header(headers, "content-type") then headers["Content-Type"] = ctype end
  if opts.query then
    path = path .. (path:find("?", 1, true) and "&" or "?") .. encode_form(opts.query)
  end
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. tostring(v) end
  if #body > 0 or method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  local raw = concat(lines, "\r\n") .. "\r\n\r\n" .. body
  local status, list, rbody = core.http_request(self.port, raw, method == "HEAD", opts.timeout)
  if not status then error("squall.test: " .. method .. " " .. path .. ": " .. tostring(list), 2) end
  local h = setmetatable({}, request.headers_mt)
  for i = 1, #list, 2 do
    local k, v = lower(list[i]), list[i + 1]
    h[k] = h[k] and (h[k] .. ", " .. v) or v
  end
  return setmetatable({ status = status, headers = h, body = rbody }, Response)
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head", "options" } do
  local upper = m:upper()
  Client[m] = function(self, path, opts) return self:request(upper, path, opts) end
end

-- In-process: runs `app`'s handler for a request without a socket (no parser, no framing),
-- for apps that are not the one being served, such as the samples in the docs. Errors become
-- what the host would send (squall.host runs both): an HTTP error its status, headers and body,
-- a database that cannot serve 503, anything else 500; for those two the logged message (a
-- 500's with its traceback) is in `res.error`, never counted away as the served log may be.
-- opts as for the client.
function _M.dispatch(app, method, path, opts)
  opts = opts or {}
  local headers = setmetatable({}, request.headers_mt)
  for k, v in pairs(opts.headers or {}) do headers[lower(k)] = v end
  local body, ctype = body_of(opts)
  if ctype then headers["content-type"] = headers["content-type"] or ctype end
  local qs = path:match("%?(.*)$") or ""
  if opts.query then qs = (qs == "" and "" or qs .. "&") .. encode_form(opts.query) end
  local req = request.new(method:upper(), path:gsub("%?.*$", ""), qs, headers, body, "1.1", "127.0.0.1", 0)
  -- A request of its own for the handler (a fresh identity map, outside the spec's own
  -- db.transaction), as when served; the spec's context comes back after.
  local spec_context = context.current()
  context.enter({ request = {} })
  local status, ctype, rbody, rheaders, log = host.run(app, req, false)
  context.enter(spec_context)
  local res = setmetatable({ status = status, body = rbody, error = log,
                             headers = setmetatable({}, request.headers_mt) }, Response)
  for k, v in pairs(rheaders or {}) do res.headers[lower(k)] = v end
  if ctype then res.headers["content-type"] = ctype end
  return res
end

-- ---- isolation -----------------------------------------------------------------------------

-- Runs fn inside a transaction that every query joins (the spec's own and the handlers' it
-- calls), then rolls it back; nested inside another, it is a savepoint. Limits: DDL (CREATE, ALTER, DROP, TRUNCATE) commits implicitly in
-- MySQL/MariaDB, ends the transaction and is not undone.
function _M.rollback(fn, ...)
  db._begin_shared()
  local res = pack(pcall(fn, ...))
  db._end_shared()
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- Inside a describe block: each test runs in its own rolled-back transaction. Each test is
-- also a request of its own for squall.model (a fresh identity map, strict mode off).
function _M.rollback_each()
  local busted = require "busted"
  busted.before_each(function()
    context.reset()
    db._begin_shared()
  end)
  busted.after_each(function()
    db._end_shared()
    context.reset()
  end)
end

-- ---- counting queries ----------------------------------------------------------------------

-- Runs fn(...) and returns how many statements it ran (its own, its tasks' and those of the
-- handlers it called: every db.query and tx:query of this worker meanwhile; BEGIN, COMMIT and
-- savepoints are not counted), the list of their SQL, and fn's results.
function _M.count_queries(fn, ...)
  local list = {}
  local outer
  outer = db._observe(function(sql)
    list[#list + 1] = sql
    if outer then outer(sql) end  -- a count inside a count counts for both
  end)
  local res = pack(pcall(fn, ...))
  db._observe(outer)
  if not res[1] then error(res[2], 0) end
  return #list, list, unpack(res, 2, res.n)
end

-- assert.queries(n, fn): fn runs exactly n statements; the failure lists the ones it ran.
local function register_assertion()
  local ok, luassert = pcall(require, "luassert")
  if not ok then return end
  local say = require "say"
  say:set("assertion.queries.positive", "Expected the block to run %s queries, it ran %s:\n%s")
  say:set("assertion.queries.negative", "Expected the block not to run %s queries, it ran %s:\n%s")
  luassert:register("assertion", "queries", function(_, arguments)
    local want, fn = arguments[1], arguments[2]
    if type(fn) ~= "function" then error("assert.queries(n, fn): fn must be a function", 3) end
    local n, list = _M.count_queries(fn)
    arguments[2] = n
    arguments[3] = "  " .. concat(list, "\n  ")
    arguments.n = 3
    arguments.nofmt = { true, true, true }
    return n == want
  end, "assertion.queries.positive", "assertion.queries.negative")
end
register_assertion()

-- ---- fixtures ------------------------------------------------------------------------------

-- A row maker for a model: make(overrides) creates a row (validated, through the model) from
-- the defaults with overrides on top. `defaults` is a table, or a function of a sequence
-- number (1, 2, ...) for unique values:
--   local user = t.factory(User, function(n) return { name = "user" .. n } end)
--   local ann = user { name = "ann" }
function _M.factory(m, defaults)
  local n = 0
  return function(overrides)
    n = n + 1
    local values = {}
    local base = type(defaults) == "function" and defaults(n) or defaults or {}
    for k, v in pairs(base) do values[k] = v end
    for k, v in pairs(overrides or {}) do values[k] = v end
    return m:create(values)
  end
end

return _M
