-- The example application. See README.md for the handler API.
local squall = require "squall"
local db = require "squall.db"

local app = squall.app()

app:get("/", function(req)
  return "Squall is running. Try /hello/you, POST JSON to /echo, or /db.\n"
end)

app:get("/hello/:name", function(req)
  return "Hello, " .. req.params.name
end)

app:post("/echo", function(req)
  local doc = req:json()  -- malformed JSON -> 400
  return 201, { got = doc }
end)

require("techempower")(app)

return app
