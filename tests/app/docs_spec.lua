-- Every ```lua sample in README.md and docs/*.md runs here, so the docs cannot drift from the
-- code. A sample runs with a fresh `app` in scope (a sample may also make its own and return
-- it); a line `-- check: METHOD PATH [JSON] => STATUS [BODY]` in a sample is a request made to
-- the sample's app and the response it must give (BODY: the exact body, or JSON compared as
-- data when it starts with { or [).
local t = require "squall.test"
local squall = require "squall"
local cjson = require "cjson"

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/app/[^/]*$") or "."

local function samples(file)
  local f = assert(io.open(ROOT .. "/" .. file))
  local text = f:read("*a")
  f:close()
  local out, n = {}, 0
  for code in text:gmatch("```lua\n(.-)```") do
    n = n + 1
    out[#out + 1] = { name = file .. " sample " .. n, code = code }
  end
  return out
end

local files = { "README.md" }
for name in io.popen("ls " .. ROOT .. "/docs/*.md"):lines() do
  files[#files + 1] = name:sub(#ROOT + 2)
end

local function run_sample(s)
  local chunk = assert(loadstring(s.code, "=" .. s.name))
  local app = squall.app()
  local env = setmetatable({ app = app }, { __index = _G })
  setfenv(chunk, env)
  local ret = chunk()
  if type(ret) == "table" and type(ret.handle) == "function" then app = ret end
  return app, ret
end

local function check(app, line, name)
  local method, path, rest = line:match("^(%u+)%s+(%S+)%s*(.-)%s*=>")
  local status, body = line:match("=>%s*(%d+)%s*(.-)%s*$")
  assert(method and status, name .. ": cannot read check line: " .. line)
  local opts = {}
  if rest ~= "" then opts.json = cjson.decode(rest) end
  local res = t.dispatch(app, method, path, opts)
  assert.equal(tonumber(status), res.status, name .. ": " .. line .. " answered " .. res.status .. " " ..
               tostring(res.body) .. (res.error and (" " .. tostring(res.error)) or ""))
  if body ~= "" then
    if body:match("^[{%[]") then
      assert.same(cjson.decode(body), cjson.decode(res.body), name .. ": " .. line)
    else
      assert.equal(body, res.body, name .. ": " .. line)
    end
  end
end

describe("documentation samples", function()
  t.rollback_each()
  local found = 0
  for _, file in ipairs(files) do
    for _, s in ipairs(samples(file)) do
      found = found + 1
      it("runs " .. s.name, function()
        local app = run_sample(s)
        for line in s.code:gmatch("%-%- check: ([^\n]+)") do check(app, line, s.name) end
      end)
    end
  end

  it("found the samples (a change in the fence format would silently skip them all)", function()
    assert.is_true(found >= 10, "only " .. found .. " lua samples found in README.md and docs/")
  end)
end)
