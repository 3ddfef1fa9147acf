local router = require "squall.router"

describe("squall.router", function()
  local r
  local function h() end
  local function g() end

  before_each(function() r = router.new() end)

  it("finds a static route by method and path", function()
    r:add("GET", "/a/b", h)
    local found, params = r:match("GET", "/a/b")
    assert.equal(h, found)
    assert.is_nil(params)
  end)

  it("captures :name segments and percent-decodes them", function()
    r:add("GET", "/hello/:name/:id", h)
    local found, params = r:match("GET", "/hello/J%C3%B6rg/42")
    assert.equal(h, found)
    assert.same({ name = "Jörg", id = "42" }, params)
  end)

  it("does not let a capture cross a slash", function()
    r:add("GET", "/u/:id", h)
    assert.is_nil((r:match("GET", "/u/1/2")))
  end)

  it("puts the rest of the path in params.splat for a trailing *", function()
    r:add("GET", "/static/*", h)
    local found, params = r:match("GET", "/static/css/site.css")
    assert.equal(h, found)
    assert.equal("css/site.css", params.splat)
  end)

  it("treats pattern magic characters in literal segments literally", function()
    r:add("GET", "/a.b/:x", h)
    assert.is_nil((r:match("GET", "/aXb/1")))
    assert.equal(h, (r:match("GET", "/a.b/1")))
  end)

  it("prefers a static route over a capture", function()
    r:add("GET", "/users/:id", g)
    r:add("GET", "/users/new", h)
    assert.equal(h, (r:match("GET", "/users/new")))
    assert.equal(g, (r:match("GET", "/users/7")))
  end)

  it("answers HEAD with the GET handler", function()
    r:add("GET", "/x", h)
    assert.equal(h, (r:match("HEAD", "/x")))
  end)

  it("returns the allowed methods, HEAD included, for a known path with another method", function()
    r:add("GET", "/x", h)
    r:add("POST", "/x", g)
    local found, allow = r:match("DELETE", "/x")
    assert.is_nil(found)
    assert.equal("GET, HEAD, POST", allow)
  end)

  it("merges allowed methods across static and captured routes", function()
    r:add("GET", "/items/new", h)
    r:add("PUT", "/items/:id", g)
    local found, allow = r:match("DELETE", "/items/new")
    assert.is_nil(found)
    assert.equal("GET, HEAD, PUT", allow)
  end)

  it("returns nothing for an unknown path", function()
    r:add("GET", "/x", h)
    local found, allow = r:match("GET", "/y")
    assert.is_nil(found)
    assert.is_nil(allow)
  end)

  it("rejects a pattern that does not start with a slash", function()
    assert.has_error(function() r:add("GET", "x", h) end)
  end)

  it("rejects a handler that is not callable", function()
    assert.has_error(function() r:add("GET", "/x", "nope") end)
  end)
end)
