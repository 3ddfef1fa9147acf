-- The e2e test application: one route per feature the suite checks. Tests look up line numbers
-- by the "marker:" comments, so keep those on the lines that raise.
local squall = require "squall"
local util = require "e2e_util"

local app = squall.app()

-- Routing and handler API -------------------------------------------------------------------

app:get("/", function(req) return "squall e2e root" end)
app:get("/hello/:name", function(req) return "Hello, " .. req.params.name end)
app:post("/echo", function(req)
  local doc = req:json()
  return 201, { got = doc }
end)

-- Capture registered before the static route: the static one must still win.
app:get("/users/:id", function(req) return "user " .. req.params.id end)
app:get("/users/me", function(req) return "me" end)
app:get("/users/:id/posts/:post", function(req)
  return "user " .. req.params.id .. " post " .. req.params.post
end)
app:get("/files/*", function(req) return "splat=" .. req.params.splat end)

app:post("/only-post", function(req) return "posted" end)

app:get("/multi", function(req) return "multi " .. req.method end)
app:post("/multi", function(req) return "multi " .. req.method end)
app:put("/multi", function(req) return "multi " .. req.method end)
app:delete("/multi", function(req) return "multi " .. req.method end)

app:put("/resource", function(req) return "put " .. req.body end)
app:patch("/resource", function(req) return "patch " .. req.body end)
app:delete("/resource", function(req) return "deleted" end)
app:options("/resource", function(req)
  return 200, { Allow = "OPTIONS, PUT, PATCH, DELETE" }, ""
end)
app:head("/head-only", function(req) return 200, { ["X-Head-Only"] = "yes" }, nil end)
app:route("GET", "/via-route", function(req) return "via route " .. req.method end)
app:route("POST", "/via-route", function(req) return "via route " .. req.method end)
app:route("PURGE", "/cache", function(req) return "purged" end)

app:get("/util", function(req) return util.name end)

-- Return forms
app:get("/ret/string", function(req) return "plain text" end)
app:get("/ret/utf8", function(req) return "h\195\169llo \226\156\147" end)
app:get("/ret/status-body", function(req) return 202, "accepted" end)
app:get("/ret/status-headers-body", function(req)
  return 200, { ["X-Custom"] = "custom value", ["X-Number"] = "42" }, "with headers"
end)
app:get("/ret/lone-status", function(req) return 202 end)
app:get("/ret/204", function(req) return 204 end)
app:get("/ret/nil", function(req) return nil end)
app:get("/ret/status-nil", function(req) return 201, nil end)
app:get("/ret/headers-nil", function(req) return 200, { ["X-Empty"] = "yes" }, nil end)
app:get("/ret/table", function(req)
  return { name = "squall", list = { 1, 2, 3 }, nested = { ok = true } }
end)
app:get("/ret/status-table", function(req) return 418, { teapot = true } end)
app:get("/ret/content-type-lower", function(req)
  return 200, { ["content-type"] = "text/html; charset=utf-8" }, "<p>hi</p>"
end)
app:get("/ret/content-type-mixed", function(req)
  return 200, { ["CoNtEnT-TyPe"] = "application/xml" }, "<a/>"
end)
app:get("/ret/cookies", function(req)
  return 200, { ["Set-Cookie"] = { "a=1; Path=/", "b=2; HttpOnly" } }, "cookies"
end)

local big = string.rep("0123456789abcdef", 65536) -- 1 MiB
app:get("/big", function(req) return big end)
app:get("/big/:mib", function(req) return string.rep(big, math.min(tonumber(req.params.mib) or 1, 64)) end)

-- Request object ----------------------------------------------------------------------------

for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" } do
  app:route(m, "/req", util.describe)
end
app:get("/req/:a/:b", util.describe)
app:get("/req-splat/*", util.describe)
local function header(req)
  local v = req.headers[req.params.name]
  if v == nil then return "(nil)" end
  return v
end
app:get("/header/:name", header)
app:post("/header/:name", header)
app:post("/form", function(req) return req:form() end)
app:get("/cookie/:name", function(req) return req:cookie(req.params.name) or "(none)" end)

app:post("/echo-body", function(req)
  return 200, { ["X-Body-Length"] = tostring(#req.body),
                ["Content-Type"] = "application/octet-stream" }, req.body
end)
app:put("/echo-body", function(req) return req.body end)

app:get("/seq/:n", function(req) return "seq " .. req.params.n end)
app:post("/seq/:n", function(req) return "seq " .. req.params.n .. " body " .. req.body end)

-- Errors ------------------------------------------------------------------------------------

app:get("/error", function(req)
  error("boom from handler") -- marker: handler error
end)
app:get("/error-table", function(req)
  error({ code = 42 }) -- marker: table error
end)
app:get("/error-module", function(req)
  util.fail_in_module()
end)
app:get("/abort/:status", function(req)
  squall.abort(tonumber(req.params.status), "aborted with " .. req.params.status)
end)
app:get("/abort-deep", function(req)
  local function inner() squall.abort(403, "deep abort") end
  inner()
  return "not reached"
end)
app:get("/bad-header-value", function(req)
  return 200, { ["X-Bad"] = "a\r\nX-Injected: yes" }, "must not be sent"
end)
app:get("/bad-header-lf", function(req)
  return 200, { ["X-Bad"] = "a\nX-Injected: yes" }, "must not be sent"
end)
app:get("/bad-header-name", function(req)
  return 200, { ["X-Bad\r\nX-Injected"] = "yes" }, "must not be sent"
end)
app:get("/bad-header-array", function(req)
  return 200, { ["Set-Cookie"] = { "ok=1", "bad=1\r\nX-Injected: yes" } }, "must not be sent"
end)

-- Busy for ?ms= milliseconds (for requests in flight at shutdown and slow handlers). Wall time
-- through the FFI when there is one: os.clock counts CPU time, which stretches on a loaded box.
local now
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, [[
      typedef struct { long tv_sec; long tv_nsec; } squall_e2e_timespec;
      int clock_gettime(int clk, squall_e2e_timespec *tp);
    ]])
    local ts = ffi.new("squall_e2e_timespec")
    now = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
    end
  else
    now = os.clock
  end
end

app:get("/spin", function(req)
  local ms = tonumber(req.query.ms) or 500
  if req.query.mark then -- tells the test the handler is running
    local f = assert(io.open(req.query.mark, "w"))
    f:close()
  end
  local t = now()
  while now() - t < ms / 1000 do end
  return "spun " .. ms
end)

-- Edges the code review found: bodiless statuses, waits inside C boundaries, host coroutines.
app:get("/status-with-body/:code", function(req)
  return tonumber(req.params.code), "this body must not be sent"
end)

-- A handler may name the response's Date and Server itself (a proxy passing them on, a
-- cached page's original date); framing headers stay the host's.
app:get("/own-date-server", function(req)
  return 200, { Date = "Tue, 01 Jan 2030 00:00:00 GMT", Server = "origin/1.0",
                ["Content-Length"] = "999" }, "own"
end)

-- A task one request spawns and another waits on (through module state: one worker only).
local shared_task
app:get("/shared-task/start", function(req)
  shared_task = squall.spawn(function() squall.sleep(5) return "finished" end)
  assert(io.open(req.query.mark, "w")):close()
  return shared_task:wait()
end)
app:get("/shared-task/join", function(req)
  assert(io.open(req.query.mark, "w")):close()   -- no yield between this and the wait
  local ok, err = pcall(shared_task.wait, shared_task)
  return ok and "joined" or ("failed: " .. tostring(err))
end)

app:get("/sleep-in-sort", function(req)
  local t = { 3, 1, 2 }
  table.sort(t, function(a, b) squall.sleep(0.01) return a < b end)
  return "sorted"
end)

app:get("/slow/:ms", function(req)
  squall.sleep(tonumber(req.params.ms) / 1000)
  return "slow " .. req.params.ms
end)

app:get("/resume-host", function(req)
  local me = coroutine.running()
  local ok, err = pcall(coroutine.resume, me)
  return ok and "resumed" or tostring(err)
end)

-- Seconds that a plain cast to an integer gets wrong (undefined behaviour): squall.sleep and the
-- test client's timeout must clamp or refuse them.
local odd_seconds = { huge = math.huge, big = 2^70, nan = 0/0, negative = -1, neg_huge = -math.huge }
app:get("/odd-sleep/:case", function(req)
  local s = odd_seconds[req.params.case]
  if s > 0 then                       -- "for ever": in a task of its own, so the request answers
    squall.spawn(squall.sleep, s)
    squall.sleep(0)                   -- the task has started its timer when this returns
    return "sleeping"
  end
  local ok, err = pcall(squall.sleep, s)
  return ok and "slept" or tostring(err)
end)
app:get("/odd-client-timeout/:case", function(req)
  local core = require "squall.core"
  local raw = "GET /hello/inner HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
  local ok, status, _, body = pcall(core.http_request, core.listen_port(), raw, false,
                                    odd_seconds[req.params.case])
  if not ok then return "error: " .. tostring(status) end
  return tostring(status) .. " " .. tostring(body)
end)

-- Streamed responses (res:start, res:write, res:finish) ---------------------------------------

app:get("/stream/parts", function(req, res)
  res:start(200, { ["Content-Type"] = "text/plain", ["X-Stream"] = "yes" })
  for i = 1, tonumber(req.query.n or 3) do
    res:write("part " .. i .. "\n")
    squall.sleep(0.01)
  end
  res:finish()
  -- Work after finish does not hold the response back.
  squall.sleep(tonumber(req.query.after or 0))
end)

app:get("/stream/unfinished", function(req, res)
  res:start(201, { ["Content-Type"] = "text/plain" })
  res:write("started ")
  res:write("and returned")
end)

app:get("/stream/fails", function(req, res)
  res:start(200)
  res:write("partial")
  error("boom after the head")  -- marker: stream-fails
end)

app:get("/stream/fails-after-finish", function(req, res)
  res:start(200)
  res:write("whole")
  res:finish()
  error("boom after the end")
end)

app:get("/stream/big", function(req, res)
  local chunk = string.rep("x", 65536)
  local n = tonumber(req.query.chunks)
  res:start(200, { ["Content-Type"] = "application/octet-stream" })
  for _ = 1, n do res:write(chunk) end
  res:finish()
  io.stderr:write("stream big done: " .. req.query.tag .. "\n")
end)

-- Keeps the CPU (no wait) while the test resets the connection, then writes into it.
app:get("/stream/write-after-reset", function(req, res)
  res:start(200)
  res:write("first")
  local t = os.clock()
  while os.clock() - t < 0.5 do end
  local ok, err = pcall(res.write, res, string.rep("y", 65536))
  if ok then ok, err = pcall(res.write, res, string.rep("y", 65536)) end
  io.stderr:write("write after reset: " .. tostring(ok) .. " " .. tostring(err) .. "\n")
end)

app:get("/stream/forever", function(req, res)
  res:start(200, { ["Content-Type"] = "text/event-stream" })
  while true do
    res:write("data: tick\n\n")
    squall.sleep(0.02)
  end
end)

app:get("/stream/misuse", function(req, res)
  local ok, err = pcall(res.write, res, "too early")
  local spawned = squall.spawn(function() return pcall(res.start, res, 200) end)
  local _, serr = spawned:wait()
  return tostring(err) .. " | " .. tostring(serr)
end)

return app
