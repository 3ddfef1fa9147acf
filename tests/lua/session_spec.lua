-- squall.session: a signed-cookie session through real middleware (squall.test.dispatch).
local squall = require "squall"
local session = require "squall.session"
local crypto = require "squall.crypto"
local t = require "squall.test"

local SECRET = "0123456789abcdef-test-secret"

local function make_app(opts)
  local app = squall.app()
  local o = { secret = SECRET }
  for k, v in pairs(opts or {}) do o[k] = v end
  app:use(squall.session(o))
  app:post("/login/:who", function(req) req:session().user = req.params.who; return "ok" end)
  app:get("/me", function(req) return { user = req:session().user or "nobody" } end)
  app:get("/plain", function() return "no session read" end)
  app:post("/logout", function(req) session.destroy(req); return "bye" end)
  return app
end

-- The cookie pair of a Set-Cookie value: "name=value".
local function pair(set_cookie) return set_cookie and set_cookie:match("^([^;]*)") end

describe("squall.session", function()
  it("keeps data across requests in a signed cookie", function()
    local app = make_app({ max_age = 3600 })
    local login = t.dispatch(app, "POST", "/login/ada")
    local set = login.headers["set-cookie"]
    assert.matches("^session=", set)
    assert.matches("HttpOnly", set)
    assert.matches("Max%-Age=3600", set)
    local me = t.dispatch(app, "GET", "/me", { headers = { Cookie = pair(set) } })
    assert.same({ user = "ada" }, me:json())
    assert.is_nil(me.headers["set-cookie"])          -- unchanged: not written again
  end)

  it("writes nothing for requests that never read it", function()
    assert.is_nil(t.dispatch(make_app(), "GET", "/plain").headers["set-cookie"])
    assert.is_nil(t.dispatch(make_app(), "GET", "/me").headers["set-cookie"])
  end)

  it("starts afresh from a forged, altered or foreign cookie", function()
    local app = make_app()
    local set = t.dispatch(app, "POST", "/login/ada").headers["set-cookie"]
    local value = pair(set):match("^session=(.*)$")
    local issued, body, mac = value:match("^(%d+)%.([^.]*)%.(.*)$")
    local forged_body = crypto.base64url('{"user":"admin"}')
    for _, v in ipairs({ issued .. "." .. forged_body .. "." .. mac, "garbage", issued .. "." .. body .. ".AAAA" }) do
      assert.same({ user = "nobody" }, t.dispatch(app, "GET", "/me", { headers = { Cookie = "session=" .. v } }):json())
    end
    local other = make_app({ secret = "another-secret-of-16-bytes" })
    assert.same({ user = "nobody" }, t.dispatch(other, "GET", "/me", { headers = { Cookie = pair(set) } }):json())
  end)

  it("expires after max_age even if the browser kept the cookie", function()
    local app = make_app({ max_age = 60 })
    local signed = require("squall.cookie").sign((os.time() - 61) .. "." .. crypto.base64url('{"user":"old"}'), SECRET)
    assert.same({ user = "nobody" }, t.dispatch(app, "GET", "/me", { headers = { Cookie = "session=" .. signed } }):json())
    local fresh = require("squall.cookie").sign(os.time() .. "." .. crypto.base64url('{"user":"new"}'), SECRET)
    assert.same({ user = "new" }, t.dispatch(app, "GET", "/me", { headers = { Cookie = "session=" .. fresh } }):json())
  end)

  it("deletes the cookie when the session is destroyed", function()
    local app = make_app()
    local set = t.dispatch(app, "POST", "/login/ada").headers["set-cookie"]
    local out = t.dispatch(app, "POST", "/logout", { headers = { Cookie = pair(set) } })
    assert.matches("^session=; .*Max%-Age=0", out.headers["set-cookie"])
  end)

  it("keeps Set-Cookie headers the handler set itself", function()
    local app = squall.app()
    app:use(squall.session({ secret = SECRET }))
    app:get("/both", function(req)
      req:session().n = 1
      return 200, { ["Set-Cookie"] = "theme=dark; Path=/" }, "ok"
    end)
    local set = t.dispatch(app, "GET", "/both").headers["set-cookie"]
    assert.equal("table", type(set))
    assert.equal("theme=dark; Path=/", set[1])
    assert.matches("^session=", set[2])
  end)

  it("insists on a real secret, and on the middleware before req:session()", function()
    assert.has_error(function() squall.session({ secret = "short" }) end)
    assert.has_error(function() squall.session() end)
    local app = squall.app()
    app:get("/s", function(req) return req:session() end)
    local res = t.dispatch(app, "GET", "/s")
    assert.equal(500, res.status)
    assert.matches("app:use%(squall.session", res.error)
  end)

  it("refuses a session too big for a cookie", function()
    local app = squall.app()
    app:use(squall.session({ secret = SECRET }))
    app:get("/big", function(req) req:session().blob = ("x"):rep(5000); return "ok" end)
    local res = t.dispatch(app, "GET", "/big")
    assert.equal(500, res.status)
    assert.matches("too big for a cookie", res.error)
  end)
end)
