-- The example application: a notes JSON API, a few small routes, and the TechEmpower routes
-- that bench/ measures. See README.md and docs/ for the API it uses.
local squall = require "squall"

local app = squall.app()

app:get("/", function(req)
  return "Squall is running. Try /hello/you, POST JSON to /echo, or the notes API under /users.\n"
end)

app:get("/hello/:name", function(req)
  return "Hello, " .. req.params.name
end)

app:post("/echo", function(req)
  local doc = req:json()  -- malformed JSON -> 400
  return 201, { got = doc }
end)

require("notes")(app)
require("techempower")(app)

return app
