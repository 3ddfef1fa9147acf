-- The TechEmpower Framework Benchmarks routes, as bench/ measures them.
local squall = require "squall"
local db = require "squall.db"

local random, floor, tonumber, sort, concat = math.random, math.floor, tonumber, table.sort, table.concat
local escape_html = squall.escape_html

-- Each worker has its own VM: seed each differently or they would all draw the same ids.
math.randomseed(os.time() + floor(os.clock() * 1e6))

local function random_id() return random(1, 10000) end
local function by_message(a, b) return a.message < b.message end

local function count(req)
  local n = tonumber(req.query.queries) or 1
  if not (n >= 1) then return 1 end  -- NaN too
  if n > 500 then return 500 end
  return floor(n)
end

local WORLD = "SELECT id, randomNumber FROM World WHERE id = ?"

return function(app)
  app:get("/plaintext", function() return "Hello, World!" end)

  app:get("/json", function() return { message = "Hello, World!" } end)

  app:get("/db", function()
    return db.query(WORLD, random_id())[1]
  end)

  app:get("/queries", function(req)
    local worlds = {}
    for i = 1, count(req) do worlds[i] = db.query(WORLD, random_id())[1] end
    return worlds
  end)

  app:get("/fortunes", function()
    local rows = db.query("SELECT id, message FROM Fortune")
    rows[#rows + 1] = { id = 0, message = "Additional fortune added at request time." }
    sort(rows, by_message)
    local out = { "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                  .. "<tr><th>id</th><th>message</th></tr>" }
    for i = 1, #rows do
      out[#out + 1] = "<tr><td>" .. rows[i].id .. "</td><td>" .. escape_html(rows[i].message) .. "</td></tr>"
    end
    out[#out + 1] = "</table></body></html>"
    return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, concat(out)
  end)

  app:get("/updates", function(req)
    local worlds = {}
    for i = 1, count(req) do
      local w = db.query(WORLD, random_id())[1]
      w.randomNumber = random_id()
      db.query("UPDATE World SET randomNumber = ? WHERE id = ?", w.randomNumber, w.id)
      worlds[i] = w
    end
    return worlds
  end)
end
