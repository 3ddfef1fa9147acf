-- squall.sse: server-sent events (the WHATWG EventSource protocol) over a streamed response.
--
--   app:get("/events", function(req, res)
--     local stream = squall.sse(req, res, { keepalive = 15 })
--     local n = tonumber(stream.last_event_id) or 0     -- a reconnecting client resumes here
--     repeat
--       n = n + 1
--       stream:send{ event = "tick", id = n, data = "tick " .. n }
--     until not stream:sleep(1)    -- keep-alive comments while it waits; false once stopping
--   end)
--
-- Like res, a stream belongs to the request's own handler coroutine. When the client goes, the
-- next send (or the sleep) raises and the handler ends there; at shutdown the stream is closed
-- after shutdown_timeout like any request still running.

local squall_sleep = require("squall").sleep
local core = require "squall.core"
local now, draining = core.now, core.draining

local type, tostring, error, pairs, setmetatable = type, tostring, error, pairs, setmetatable
local floor, concat = math.floor, table.concat
local find, gsub, gmatch = string.find, string.gsub, string.gmatch

local Stream = {}
Stream.__index = Stream

-- A field value that must stay on one line (event, id): a newline would start a new field.
local function one_line(v, what)
  v = tostring(v)
  if find(v, "[\r\n]") then error("squall.sse: " .. what .. " must not contain a line break", 3) end
  return v
end

-- Sends one event: t.data (a string: several lines become several data: fields, as the spec
-- joins them back with "\n"; a table is sent as JSON), t.event, t.id (what a reconnecting client
-- sends back as Last-Event-ID), t.retry (milliseconds the client waits before reconnecting).
function Stream:send(t)
  if type(t) ~= "table" then t = { data = t } end
  local out = {}
  if t.event ~= nil then out[#out + 1] = "event: " .. one_line(t.event, "event") .. "\n" end
  if t.id ~= nil then
    local id = one_line(t.id, "id")
    if find(id, "%z") then error("squall.sse: id must not contain a NUL", 2) end
    out[#out + 1] = "id: " .. id .. "\n"
  end
  if t.retry ~= nil then
    if type(t.retry) ~= "number" or t.retry < 0 or t.retry ~= floor(t.retry) then
      error("squall.sse: retry must be a whole number of milliseconds", 2)
    end
    out[#out + 1] = "retry: " .. t.retry .. "\n"
  end
  local data = t.data
  if type(data) == "table" then data = require("squall.json").encode(data) end
  if data ~= nil then
    data = gsub(gsub(tostring(data), "\r\n", "\n"), "\r", "\n")
    for line in gmatch(data .. "\n", "([^\n]*)\n") do out[#out + 1] = "data: " .. line .. "\n" end
  end
  if #out == 0 then error("squall.sse: an event needs data, event, id or retry", 2) end
  out[#out + 1] = "\n"
  self.res:write(concat(out))
  self.sent = now()
end

-- A comment line: ignored by the client, it keeps proxies from closing an idle connection.
function Stream:comment(text)
  self.res:write(": " .. one_line(text or "", "a comment") .. "\n\n")
  self.sent = now()
end

-- Waits `seconds` without blocking the worker, sending a keep-alive comment whenever nothing
-- was sent for `keepalive` seconds meanwhile. Returns false at once, without waiting, when the
-- server is stopping: `while stream:sleep(1) do ... end` ends the stream then, and a drain does
-- not wait out shutdown_timeout for it (the client reconnects to another instance).
function Stream:sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("squall.sse: sleep takes a number of seconds", 2)
  end
  local deadline = now() + seconds
  while true do
    if draining() then return false end
    local t = now()
    local left = deadline - t
    if left <= 0 then return true end
    local quiet_until = self.sent + self.keepalive
    if t >= quiet_until then
      self:comment("keep-alive")
      quiet_until = self.sent + self.keepalive
    end
    -- In slices of at most a quarter second, so that a stop is noticed while it waits.
    local slice = left < quiet_until - t and left or quiet_until - t
    squall_sleep(slice < 0.25 and slice or 0.25)
  end
end

-- opts.keepalive: seconds of silence after which sleep() sends a comment (default 15);
-- opts.headers: more response headers; opts.retry: sent first, as the client's reconnect delay.
return function(req, res, opts)
  if type(res) ~= "table" or type(res.write) ~= "function" then
    error("squall.sse(req, res): res is the handler's second argument (not given by t.dispatch)", 2)
  end
  opts = opts or {}
  local keepalive = opts.keepalive or 15
  if type(keepalive) ~= "number" or not (keepalive > 0) then error("squall.sse: keepalive must be > 0 seconds", 2) end
  local headers = { ["Content-Type"] = "text/event-stream; charset=utf-8", ["Cache-Control"] = "no-cache",
                    ["X-Accel-Buffering"] = "no" }
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  res:start(200, headers)
  local stream = setmetatable({ res = res, keepalive = keepalive, sent = now(),
                                last_event_id = req.headers["last-event-id"] }, Stream)
  -- The head goes out with the first write: send it now, so the client's EventSource opens.
  if opts.retry then stream:send{ retry = opts.retry } else stream:comment("stream open") end
  return stream
end
