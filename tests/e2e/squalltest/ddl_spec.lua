local t = require "squall.test"
local db = require "squall.db"
-- Table names come from the test driver, so that two runs at once do not share them.
local tbl, other = os.getenv("SQUALL_DDL_TABLE"), os.getenv("SQUALL_DDL_TABLE") .. "_other"
describe("rollback_each and DDL", function()
  t.rollback_each()
  it("a row inserted before DDL is committed by it", function()
    db.query("INSERT INTO " .. tbl .. " (v) VALUES (1)")
    db.query("CREATE TABLE IF NOT EXISTS " .. other .. " (v INT)")  -- commits implicitly
  end)
  it("a row inserted without DDL is rolled back, and the handler sees it meanwhile", function()
    db.query("INSERT INTO " .. tbl .. " (v) VALUES (2)")
    assert.equal(2, t.client():get("/count/" .. tbl):json().n)
  end)
end)
