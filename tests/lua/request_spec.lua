local squall = require "squall"
local request = require "squall.request"

local function new(opts)
  opts = opts or {}
  local headers = setmetatable(opts.headers or {}, request.headers_mt)
  return request.new(opts.method or "GET", opts.path or "/", opts.query_string or "", headers,
                     opts.body or "", "1.1", "127.0.0.1", 5555)
end

local function http_error_of(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(squall.is_http_error(e), "expected an HTTP error, got " .. tostring(e))
  return e
end

describe("squall.request", function()
  it("decodes the query string lazily, with + as space and repeated keys as arrays", function()
    local req = new { query_string = "a=1&b=hello+w%C3%B6rld&a=2&flag" }
    assert.is_nil(rawget(req, "query"))
    assert.same({ a = { "1", "2" }, b = "hello wörld", flag = "" }, req.query)
  end)

  it("gives a route without captures an empty params table, the same one on every read", function()
    local app = squall.app()
    app:get("/static", function(req)
      req.params.note = "handlers may write to it"
      return { params = req.params }
    end)
    local req = new { path = "/static" }
    local status, _, body = app:handle(req)
    assert.equal(200, status)
    assert.equal('{"params":{"note":"handlers may write to it"}}', body)
    assert.equal(req.params, req.params)
    -- Each request gets its own: nothing written above leaks into the next one.
    local fresh = new { path = "/static" }
    assert.is_nil(rawget(fresh, "params"))
    assert.same({}, fresh.params)
  end)

  it("gives an empty table for an empty query string", function()
    assert.same({}, new().query)
  end)

  it("looks headers up case-insensitively", function()
    local req = new { headers = { ["content-type"] = "text/html" } }
    assert.equal("text/html", req.headers["Content-Type"])
    assert.equal("text/html", req:header("CONTENT-TYPE"))
  end)

  it("decodes a JSON body", function()
    assert.same({ a = { 1, 2 } }, new({ body = '{"a":[1,2]}' }):json())
  end)

  it("raises a 400 HTTP error for malformed JSON", function()
    local e = http_error_of(function() new({ body = '{"a":' }):json() end)
    assert.equal(400, e.status)
    assert.matches("malformed JSON", e.message)
  end)

  it("raises a 400 HTTP error for an empty body when JSON is expected", function()
    assert.equal(400, http_error_of(function() new():json() end).status)
  end)

  it("decodes an urlencoded form body", function()
    assert.same({ name = "a b", x = "&" }, new({ body = "name=a+b&x=%26" }):form())
  end)

  it("parses cookies, quoted values included", function()
    local req = new { headers = { cookie = 'sid=abc; theme="dark"; empty=' } }
    assert.equal("abc", req:cookie("sid"))
    assert.equal("dark", req:cookie("theme"))
    assert.equal("", req:cookie("empty"))
    assert.is_nil(req:cookie("missing"))
  end)

  it("carries method, path, version and peer address", function()
    local req = new { method = "PUT", path = "/p" }
    assert.equal("PUT", req.method)
    assert.equal("/p", req.path)
    assert.equal("1.1", req.http_version)
    assert.equal("127.0.0.1", req.remote_addr)
    assert.equal(5555, req.remote_port)
  end)
end)
