local t = require "squall.test"
describe("passing", function()
  it("gets ok #fast", function()
    assert.equal("ok", t.client():get("/ok").body)
  end)
  it("is filtered out by tag", function()
    assert.equal(1, 1)
  end)
end)
