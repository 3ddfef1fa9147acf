local t = require "squall.test"
describe("failing", function()
  it("reports an assertion with its message", function()
    local res = t.client():get("/ok")
    assert.equal("not ok", res.body)  -- fail-line
  end)
  it("sees a 500 from a handler that raised", function()
    assert.equal(500, t.client():get("/boom").status)
  end)
end)
