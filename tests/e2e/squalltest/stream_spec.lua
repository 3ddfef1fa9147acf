local t = require "squall.test"
describe("a streamed response", function()
  it("reaches the test client whole", function()
    local r = t.client():get("/streamed")
    assert.equal(200, r.status)
    assert.equal("one two", r.body)
    assert.equal("yes", r.headers["x-streamed"])
  end)
end)
