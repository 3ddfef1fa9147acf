-- `squall new DIR`: writes a minimal project that serves at once (`squall -c DIR/config.lua`) and
-- whose specs pass at once (`squall test -c DIR/config.lua DIR/spec`). Run by the host in a plain
-- Lua state (server/scaffold.c), which passes mkdir in.

local _M = {}

local FILES = {}

FILES["config.lua"] = [[
-- Squall's configuration (every key: docs/configuration.md of Squall). Plain Lua returning a table.
return {
  listen = "127.0.0.1:8080",
  scripts = "scripts",
  app = "app",
  reload = true,                  -- edit scripts/ while it runs
  -- The app's own settings, read as squall.settings; secrets from the environment:
  settings = { greeting = "Hello" },
  -- settings_env = { jwt_secret = "APP_JWT_SECRET" },
  -- A database of your own on Squall's private MariaDB: `tools/db.sh create NAME` prints this.
  -- db = { host = "127.0.0.1", port = 3306, user = "NAME", password_env = "SQUALL_DB_PASSWORD",
  --        database = "NAME" },
}
]]

FILES["scripts/app.lua"] = [[
-- The app: routes and their handlers. Each request runs in its own coroutine; a database query
-- (require "squall.db") simply waits for its rows without blocking the server.
local squall = require "squall"

local app = squall.app()

app:get("/", function(req)
  return squall.settings.greeting .. " from Squall\n"
end)

app:get("/hello/:name", function(req)
  return { greeting = squall.settings.greeting, name = req.params.name }
end)

app:post("/echo", function(req)
  return 201, { got = req:json() }       -- malformed JSON is a 400
end)

return app
]]

FILES["spec/app_spec.lua"] = [[
-- Specs for the app, run inside the host against the app config.lua serves:
--   squall test -c config.lua spec
local t = require "squall.test"

describe("the app", function()
  local client = t.client()               -- real HTTP requests to the app being served

  it("greets", function()
    local res = client:get("/hello/ada")
    assert.equal(200, res.status)
    assert.same({ greeting = "Hello", name = "ada" }, res:json())
  end)

  it("echoes JSON and refuses what is not", function()
    assert.equal(201, client:post("/echo", { json = { a = 1 } }).status)
    assert.equal(400, client:post("/echo", { body = "{nope", headers = { ["Content-Type"] = "application/json" } }).status)
  end)

  it("answers 404 elsewhere", function()
    assert.equal(404, client:get("/nowhere").status)
  end)
end)
]]

FILES["db/schema.sql"] = [[
-- The app's tables. Load with: mariadb NAME < db/schema.sql (or keep it for tools/db.sh users).
CREATE TABLE IF NOT EXISTS items (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
]]

FILES[".gitignore"] = "var/\n"

local ORDER = { "config.lua", "scripts/app.lua", "spec/app_spec.lua", "db/schema.sql", ".gitignore" }

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Writes the project into `dir` (created; it must not hold any of the files already). Returns
-- what to do next, for the terminal.
function _M.create(dir, mkdir)
  if dir == "" then error("the directory name is empty", 0) end
  for _, rel in ipairs(ORDER) do
    if exists(dir .. "/" .. rel) then
      error(dir .. "/" .. rel .. " exists already; choose a new directory", 0)
    end
  end
  assert(mkdir(dir))
  for _, sub in ipairs({ "scripts", "spec", "db" }) do assert(mkdir(dir .. "/" .. sub)) end
  for _, rel in ipairs(ORDER) do
    local f = assert(io.open(dir .. "/" .. rel, "w"))
    f:write(FILES[rel])
    f:close()
  end
  return ("created %s:\n  config.lua  scripts/app.lua  spec/app_spec.lua  db/schema.sql\n"
          .. "serve it:    squall -c %s/config.lua\n"
          .. "test it:     squall test -c %s/config.lua %s/spec\n"):format(dir, dir, dir, dir)
end

return _M
