-- Benchmark app: the two TechEmpower-style routes, nothing else.
local squall = require "squall"

local app = squall.app()

app:get("/plaintext", function(req)
  return "Hello, World!"                 -- text/plain; charset=utf-8
end)

app:get("/json", function(req)
  return { message = "Hello, World!" }   -- application/json via lua-cjson
end)

return app
