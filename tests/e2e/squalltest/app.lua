-- The app `squall test` serves in test_squall_test.py.
local squall = require "squall"
local db = require "squall.db"
local app = squall.app()

app:get("/ok", function(req) return "ok" end)

app:get("/boom", function(req)
  local t = nil
  return t.field  -- boom-line: an error inside a handler
end)

app:get("/count/:tbl", function(req)
  return db.query("SELECT COUNT(*) AS n FROM " .. req.params.tbl)[1]
end)

app:get("/streamed", function(req, res)
  res:start(200, { ["X-Streamed"] = "yes" })
  res:write("one ")
  res:write("two")
end)

return app
