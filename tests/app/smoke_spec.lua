local t = require "squall.test"
local db = require "squall.db"
local squall = require "squall"

describe("squall test", function()
  local client = t.client()

  it("reaches the app over a real loopback connection", function()
    local res = client:get("/hello/world")
    assert.equal(200, res.status)
    assert.equal("Hello, world", res.body)
    assert.equal("text/plain; charset=utf-8", res.headers["Content-Type"])
  end)

  it("lets a spec body query the database directly", function()
    local rows = db.query("SELECT 1 + ? AS n", 41)
    assert.equal(42, rows[1].n)
  end)

  it("lets a spec body sleep and spawn", function()
    squall.sleep(0.01)
    local task = squall.spawn(function() return db.query("SELECT 7 AS n")[1].n end)
    assert.equal(7, task:wait())
  end)

  describe("with rollback_each", function()
    t.rollback_each()

    it("shows the handler rows the spec inserted", function()
      db.query("INSERT INTO World (id, randomNumber) VALUES (?, ?)", 20001, 5)
      local id = db.query("INSERT INTO users (name, bio) VALUES (?, ?)", "smoke", "seen by the handler").insert_id
      local res = client:get("/users/" .. id)
      assert.equal(200, res.status)
      assert.same({ id = id, name = "smoke", bio = "seen by the handler" }, res:json())
    end)

    it("does not see the previous test's rows", function()
      local rows = db.query("SELECT COUNT(*) AS n FROM World WHERE id = ?", 20001)
      assert.equal(0, rows[1].n)
    end)
  end)
end)
