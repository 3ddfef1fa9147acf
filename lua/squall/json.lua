-- squall.json: JSON for handlers. Encoding is the host's (exact integers up to 2^53, shortest
-- round-trip doubles, db.null as null, empty arrays); decoding is lua-cjson's.
local cjson = require "cjson.safe"

local setmetatable = setmetatable

local _M = {}

_M.null = cjson.null

-- Tables with this metatable encode as arrays even when empty.
_M.array_mt = { __jsontype = "array" }

function _M.array(t)
  return setmetatable(t or {}, _M.array_mt)
end

-- Returns the decoded value, or nil and an error message.
_M.decode = cjson.decode

-- Required on first use, so that modules using squall.json stay loadable by plain busted.
local encode
function _M.encode(value)
  encode = encode or require("squall.core").json_encode
  return encode(value)
end

return _M
