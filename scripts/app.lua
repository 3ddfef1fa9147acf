-- The example application. See README.md for the handler API.
local squall = require "squall"

local app = squall.app()

app:get("/", function(req)
  return "Squall is running. Try /hello/you or POST JSON to /echo.\n"
end)

app:get("/hello/:name", function(req)
  return "Hello, " .. req.params.name
end)

app:post("/echo", function(req)
  local doc = req:json()  -- malformed JSON -> 400
  return 201, { got = doc }
end)

-- The TechEmpower plaintext and JSON routes, used by bench/.
app:get("/plaintext", function(req)
  return "Hello, World!"
end)

app:get("/json", function(req)
  return { message = "Hello, World!" }
end)

return app
