-- squall.test.dispatch ends a request the way the served host does (both go through squall.host).
local squall = require "squall"
local json = require "squall.json"
local t = require "squall.test"

describe("squall.test.dispatch", function()
  local app = squall.app()
  app:get("/abort-table", function() squall.abort(409, { items = json.array() }, { ["X-Why"] = "busy" }) end)
  app:post("/form", function(req) return { ctype = req.headers["content-type"], form = req:form() } end)
  app:get("/boom", function() error("kaboom") end)

  it("sends an aborted table message as the host does, headers included", function()
    local res = t.dispatch(app, "GET", "/abort-table")
    assert.equal(409, res.status)
    assert.equal('{"items":[]}', res.body)
    assert.equal("application/json", res.headers["Content-Type"])
    assert.equal("busy", res.headers["X-Why"])
  end)

  it("gives a form body its Content-Type", function()
    local res = t.dispatch(app, "POST", "/form", { form = { a = "1" } })
    assert.equal(200, res.status)
    assert.same({ ctype = "application/x-www-form-urlencoded", form = { a = "1" } }, res:json())
  end)

  it("answers an error with the host's 500 and keeps the traceback in res.error", function()
    local res = t.dispatch(app, "GET", "/boom")
    assert.equal(500, res.status)
    assert.equal("Internal Server Error\n", res.body)
    assert.matches("kaboom", res.error)
    assert.matches("stack traceback", res.error)
  end)
end)
