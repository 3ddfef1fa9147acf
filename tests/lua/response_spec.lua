local response = require "squall.response"
local from = response.from_handler

describe("squall.response.from_handler", function()
  it("sends a lone string as a 200 text/plain body", function()
    assert.same({ 200, "text/plain; charset=utf-8", "hi" }, { from("hi") })
  end)

  it("encodes a table body as JSON", function()
    local status, ctype, body = from(201, { ok = true })
    assert.equal(201, status)
    assert.equal("application/json", ctype)
    assert.equal('{"ok":true}', body)
  end)

  it("treats a lone number as a status with an empty body", function()
    local status, ctype, body = from(204)
    assert.equal(204, status)
    assert.is_nil(ctype)
    assert.equal("", body)
  end)

  it("takes status, headers, body and keeps the handler's Content-Type", function()
    local h = { ["content-type"] = "text/html" }
    local status, ctype, body, headers = from(200, h, "<p>")
    assert.equal(200, status)
    assert.is_nil(ctype)
    assert.equal("<p>", body)
    assert.equal(h, headers)
  end)

  it("sends an explicit nil body as empty", function()
    local _, _, body = from(200, {}, nil)
    assert.equal("", body)
  end)

  it("refuses a body it cannot send", function()
    assert.has_error(function() from(200, function() end) end)
  end)

  it("refuses two values whose first is not a status", function()
    assert.has_error(function() from("a", "b") end)
  end)
end)
