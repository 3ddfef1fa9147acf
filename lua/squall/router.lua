-- Routes: method + path pattern -> handler.
--
-- Static patterns (no captures) are found with one table lookup, which is the common case for
-- hot endpoints; patterns with `:name` captures or a trailing `*` are compiled once into Lua
-- patterns and tried in the order they were added. A path that some route knows but not for
-- this method yields the set of methods that would have matched, for 405's Allow header.

local type, pairs, setmetatable, getmetatable, error, tostring = type, pairs, setmetatable, getmetatable, error, tostring
local concat, sort = table.concat, table.sort
local find, gsub, sub, match, char, tonumber = string.find, string.gsub, string.sub, string.match, string.char, tonumber

local _M = {}
local mt = { __index = _M }

-- A closure made inside unescape would be made on every call, and LuaJIT does not compile
-- making one (FNEW): the trace of every routed request ended there.
local function hex_char(h) return char(tonumber(h, 16)) end

local function unescape(s)
  if not find(s, "%", 1, true) then return s end
  return (gsub(s, "%%(%x%x)", hex_char))
end
_M.unescape = unescape

function _M.new()
  return setmetatable({ static = {}, dynamic = {}, by_pattern = {} }, mt)
end

local function compile(pattern)
  local names, parts = {}, { "^" }
  local pos, len = 1, #pattern
  while pos <= len do
    local s, e, name = find(pattern, "^:([%a_][%w_]*)", pos)
    if s then
      names[#names + 1] = name
      parts[#parts + 1] = "([^/]+)"
      pos = e + 1
    elseif sub(pattern, pos) == "*" then
      names[#names + 1] = "splat"
      parts[#parts + 1] = "(.*)"
      pos = len + 1
    else
      local lit = match(pattern, "^[^:*]+", pos)
      if not lit then error("bad route pattern: " .. pattern, 4) end
      parts[#parts + 1] = (gsub(lit, "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"))
      pos = pos + #lit
    end
  end
  parts[#parts + 1] = "$"
  return concat(parts), names
end

function _M:add(method, pattern, handler)
  if type(method) ~= "string" then error("route method must be a string", 3) end
  if type(pattern) ~= "string" or sub(pattern, 1, 1) ~= "/" then
    error("route pattern must be a string starting with '/', got " .. tostring(pattern), 3)
  end
  if type(handler) ~= "function" and not (type(handler) == "table" and getmetatable(handler)
      and getmetatable(handler).__call) then
    error("route handler must be a function", 3)
  end
  method = method:upper()
  if not find(pattern, "[:*]") then
    local byname = self.static[pattern]
    if not byname then byname = {}; self.static[pattern] = byname end
    byname[method] = handler
    return
  end
  local entry = self.by_pattern[pattern]
  if not entry then
    local lpat, names = compile(pattern)
    entry = { lpat = lpat, names = names, handlers = {} }
    self.by_pattern[pattern] = entry
    self.dynamic[#self.dynamic + 1] = entry
  end
  entry.handlers[method] = handler
end

local function pick(handlers, method)
  local h = handlers[method]
  if h then return h end
  if method == "HEAD" then return handlers.GET end
end

local function add_allowed(allowed, handlers)
  for m in pairs(handlers) do allowed[m] = true end
  if handlers.GET then allowed.HEAD = true end
end


-- Returns handler, params  |  nil, allow_header_value  |  nil, nil (no route for the path).
-- A route without captures gives no params table (nil): most hot routes are static, and the
-- request makes an empty one only if the handler looks.
function _M:match(method, path)
  local handlers = self.static[path]
  if handlers then
    local h = pick(handlers, method)
    if h then return h, nil end
  end
  local allowed
  if handlers then allowed = {}; add_allowed(allowed, handlers) end
  local dynamic = self.dynamic
  for i = 1, #dynamic do
    local entry = dynamic[i]
    if find(path, entry.lpat) then  -- no captures table for the routes that do not match
      local h = pick(entry.handlers, method)
      if h then
        local caps, params, names = { match(path, entry.lpat) }, {}, entry.names
        for j = 1, #names do params[names[j]] = unescape(caps[j]) end
        return h, params
      end
      allowed = allowed or {}
      add_allowed(allowed, entry.handlers)
    end
  end
  if not allowed then return nil, nil end
  local list = {}
  for m in pairs(allowed) do list[#list + 1] = m end
  sort(list)
  return nil, concat(list, ", ")
end

return _M
