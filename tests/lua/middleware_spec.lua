-- Middleware: before/after hooks with path prefixes, error handlers for the framework's own
-- answers, and squall.cors. Through squall.test.dispatch, which ends a request as the host does.
local squall = require "squall"
local t = require "squall.test"

local function json_of(res) return require("cjson").decode(res.body) end

describe("app:before", function()
  it("runs hooks in order ahead of the route, scoped by path prefix", function()
    local app = squall.app()
    local seen = {}
    app:before(function(req) seen[#seen + 1] = "all " .. req.path end)
    app:before("/api", function(req) req.user = "ada"; seen[#seen + 1] = "api" end)
    app:get("/api/me", function(req) return { user = req.user } end)
    app:get("/apix", function(req) return { user = req.user or "none" } end)
    assert.same({ user = "ada" }, json_of(t.dispatch(app, "GET", "/api/me")))
    assert.same({ user = "none" }, json_of(t.dispatch(app, "GET", "/apix")))
    assert.same({ "all /api/me", "api", "all /apix" }, seen)
  end)

  it("answers instead of the route when a hook returns a response, and runs it once", function()
    local app = squall.app()
    local calls, handled = 0, false
    app:before("/admin", function(req)
      calls = calls + 1
      if req.headers.authorization ~= "Bearer ok" then return 401, { error = "unauthorized" } end
    end)
    app:get("/admin/panel", function() handled = true; return "panel" end)
    local res = t.dispatch(app, "GET", "/admin/panel")
    assert.equal(401, res.status)
    assert.same({ error = "unauthorized" }, json_of(res))
    assert.is_false(handled)
    assert.equal(1, calls)
    assert.equal("panel", t.dispatch(app, "GET", "/admin/panel", { headers = { Authorization = "Bearer ok" } }).body)
  end)

  it("rejects a prefix that is not a path", function()
    assert.has_error(function() squall.app():before("api", function() end) end)
    assert.has_error(function() squall.app():after(42) end)
  end)
end)

describe("app:after", function()
  it("sees and changes status, headers and body of every response, errors included", function()
    local app = squall.app()
    app:after(function(req, res)
      res.headers["X-Request-Path"] = req.path
      if res.status == 200 then res.body = res.body .. "!" end
    end)
    app:get("/hello", function() return "hi" end)
    app:post("/doc", function(req) return req:json() end)
    app:get("/boom", function() error("kaput") end)
    local ok = t.dispatch(app, "GET", "/hello")
    assert.equal("hi!", ok.body)
    assert.equal("/hello", ok.headers["x-request-path"])
    for _, case in ipairs({ { "GET", "/nope", 404 }, { "DELETE", "/hello", 405 }, { "GET", "/boom", 500 } }) do
      local res = t.dispatch(app, case[1], case[2])
      assert.equal(case[3], res.status)
      assert.equal(case[2], res.headers["x-request-path"])
    end
    local bad = t.dispatch(app, "POST", "/doc", { body = "{not json", headers = { ["Content-Type"] = "application/json" } })
    assert.equal(400, bad.status)
    assert.equal("/doc", bad.headers["x-request-path"])
  end)

  it("turns a failing hook into a plain, logged 500", function()
    local app = squall.app()
    app:after(function() error("hook broke") end)
    app:get("/x", function() return "x" end)
    local res = t.dispatch(app, "GET", "/x")
    assert.equal(500, res.status)
    assert.matches("hook broke", res.error)
  end)
end)

describe("app:on_error", function()
  it("gives the framework's answers the app's format, keeping their status", function()
    local app = squall.app()
    app:on_error(404, function(req, err) return { error = "no route for " .. req.path } end)
    app:on_error("*", function(req, err)
      return err.status, { ["X-Error"] = "1" }, { error = err.status == 500 and "internal" or err.message }
    end)
    app:get("/boom", function() error("secret detail") end)
    app:post("/doc", function(req) return req:json() end)
    local nf = t.dispatch(app, "GET", "/missing")
    assert.equal(404, nf.status)
    assert.equal("application/json", nf.headers["content-type"])
    assert.same({ error = "no route for /missing" }, json_of(nf))
    local boom = t.dispatch(app, "GET", "/boom")
    assert.equal(500, boom.status)
    assert.same({ error = "internal" }, json_of(boom))
    assert.equal("1", boom.headers["x-error"])
    assert.matches("secret detail", boom.error)        -- still logged with its traceback
    local bad = t.dispatch(app, "POST", "/doc", { body = "[", headers = { ["Content-Type"] = "application/json" } })
    assert.equal(400, bad.status)
    assert.equal("application/json", bad.headers["content-type"])
    local m405 = t.dispatch(app, "PUT", "/boom")
    assert.equal(405, m405.status)
    assert.matches("^GET", m405.headers["allow"])        -- the framework's headers survive
  end)

  it("rewords raised errors but leaves error responses a handler returns as they are", function()
    local app = squall.app()
    app:on_error("*", function(req, err) return { error = err.message } end)
    app:get("/returned", function() return 422, { errors = { title = { "is required" } } } end)
    app:get("/aborted", function() squall.abort(403, "forbidden") end)
    assert.same({ errors = { title = { "is required" } } }, json_of(t.dispatch(app, "GET", "/returned")))
    local res = t.dispatch(app, "GET", "/aborted")
    assert.equal(403, res.status)
    assert.same({ error = "forbidden" }, json_of(res))
  end)

  it("leaves successful responses alone", function()
    local app = squall.app()
    app:on_error("*", function() return "replaced" end)
    app:get("/ok", function() return 201, "made" end)
    local res = t.dispatch(app, "GET", "/ok")
    assert.equal(201, res.status)
    assert.equal("made", res.body)
  end)
end)

describe("squall.cors", function()
  local function app_with(opts)
    local app = squall.app()
    app:use("/api", squall.cors(opts))
    app:get("/api/items", function() return { 1, 2 } end)
    app:get("/home", function() return "home" end)
    return app
  end

  it("answers preflight for any path under it, known or not, without OPTIONS routes", function()
    local app = app_with({ origins = { "https://a.example" }, max_age = 600, headers = { "Authorization", "Content-Type" } })
    for _, path in ipairs({ "/api/items", "/api/unknown" }) do
      local res = t.dispatch(app, "OPTIONS", path, { headers = { Origin = "https://a.example",
                                                                 ["Access-Control-Request-Method"] = "POST" } })
      assert.equal(204, res.status)
      assert.equal("https://a.example", res.headers["access-control-allow-origin"])
      assert.matches("POST", res.headers["access-control-allow-methods"])
      assert.equal("Authorization, Content-Type", res.headers["access-control-allow-headers"])
      assert.equal("600", res.headers["access-control-max-age"])
      assert.equal("Origin", res.headers["vary"])
    end
    assert.equal(404, t.dispatch(app, "GET", "/api/unknown", { headers = { Origin = "https://a.example" } }).status)
  end)

  it("adds its headers to every response to an allowed origin, errors included", function()
    local app = app_with({ origins = { "https://a.example" }, credentials = true, expose = "X-Total" })
    local ok = t.dispatch(app, "GET", "/api/items", { headers = { Origin = "https://a.example" } })
    assert.equal("https://a.example", ok.headers["access-control-allow-origin"])
    assert.equal("true", ok.headers["access-control-allow-credentials"])
    assert.equal("X-Total", ok.headers["access-control-expose-headers"])
    local nf = t.dispatch(app, "GET", "/api/nothing", { headers = { Origin = "https://a.example" } })
    assert.equal(404, nf.status)
    assert.equal("https://a.example", nf.headers["access-control-allow-origin"])
  end)

  it("says nothing to other origins, and nothing outside its prefix", function()
    local app = app_with({ origins = { "https://a.example" } })
    local evil = t.dispatch(app, "OPTIONS", "/api/items", { headers = { Origin = "https://evil.example",
                                                                        ["Access-Control-Request-Method"] = "DELETE" } })
    assert.equal(204, evil.status)
    assert.is_nil(evil.headers["access-control-allow-origin"])
    assert.is_nil(t.dispatch(app, "GET", "/api/items", { headers = { Origin = "https://evil.example" } })
                    .headers["access-control-allow-origin"])
    assert.is_nil(t.dispatch(app, "GET", "/home", { headers = { Origin = "https://a.example" } })
                    .headers["access-control-allow-origin"])
  end)

  it("uses * for any origin without credentials, and echoes the origin with them", function()
    local star = app_with({ origins = "*" })
    assert.equal("*", t.dispatch(star, "GET", "/api/items", { headers = { Origin = "https://x.example" } })
                        .headers["access-control-allow-origin"])
    local cred = app_with({ origins = "*", credentials = true })
    local res = t.dispatch(cred, "GET", "/api/items", { headers = { Origin = "https://x.example" } })
    assert.equal("https://x.example", res.headers["access-control-allow-origin"])
    assert.equal("Origin", res.headers["vary"])
  end)

  it("leaves requests without an Origin alone, and a plain OPTIONS to the router", function()
    local app = app_with({ origins = "*" })
    assert.is_nil(t.dispatch(app, "GET", "/api/items").headers["access-control-allow-origin"])
    local opt = t.dispatch(app, "OPTIONS", "/api/items")
    assert.equal(204, opt.status)
    assert.matches("^GET", opt.headers["allow"])
  end)
end)
