-- db.transaction's edges: a task that outlives the block it was spawned in, and a COMMIT that
-- fails. Outside rollback_each on purpose: these need real transactions of their own.
local db = require "squall.db"
local squall = require "squall"

describe("db.transaction", function()
  it("gives a task that outlives the block it was spawned in an error instead of the ended transaction", function()
    local task
    db.transaction(function()
      task = squall.spawn(function()
        squall.sleep(0.05)  -- the block commits meanwhile
        return db.current_transaction()
      end)
    end)
    local ok, err = pcall(task.wait, task)
    assert.is_false(ok)
    assert.matches("the transaction this task was spawned in has ended", tostring(err))
  end)

  it("lets a task spawned in the block and waited for inside it use the transaction", function()
    local inside
    db.transaction(function(tx)
      inside = squall.spawn(function() return db.current_transaction() end):wait() == tx
    end)
    assert.is_true(inside)
    assert.is_nil(db.current_transaction())
  end)

  it("runs the rollback hooks and raises when COMMIT itself fails", function()
    local rollbacks = 0
    db.on_rollback(function() rollbacks = rollbacks + 1 end)
    local ok, err = pcall(db.transaction, function(tx)
      local id = tx:query("SELECT CONNECTION_ID() AS id")[1].id
      -- Another connection ends this one: the block's work is done, its COMMIT cannot be.
      db.query("KILL " .. math.floor(id))
    end)
    assert.is_false(ok)
    assert.matches("connection was lost", tostring(err))
    assert.equal(1, rollbacks)
  end)
end)
