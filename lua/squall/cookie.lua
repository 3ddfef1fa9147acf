-- squall.cookie: Set-Cookie values with their attributes, and cookies signed with HMAC so that a
-- client cannot forge or alter them (it can still read them: sign, do not store secrets).
--
--   local cookie = require "squall.cookie"
--   return 200, { ["Set-Cookie"] = cookie.serialize("theme", "dark", { max_age = 86400 }) }, "ok"
--   local uid = cookie.unsign(req:cookie("uid") or "", secret)   -- nil when forged or altered
--
-- Several cookies in one response: give Set-Cookie an array of values.

local crypto = require "squall.crypto"

local type, tostring, pairs, concat, floor = type, tostring, pairs, table.concat, math.floor
local find, match, date = string.find, string.match, os.date

local _M = {}

local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

-- RFC 6265: a cookie name is a token; a value has no controls, whitespace, quote, comma,
-- semicolon or backslash. Anything else would let a value inject attributes or other cookies.
local function check(name, value)
  if type(name) ~= "string" or not match(name, "^[!#$%%&'*+%-.^_`|~%w]+$") then
    error("cookie: invalid name " .. tostring(name), 3)
  end
  if type(value) ~= "string" or find(value, "[%z\1-\32\"',;\\\127-\255]") then
    error("cookie " .. name .. ": the value must be a string without spaces, quotes, commas, "
          .. "semicolons or backslashes (encode it, e.g. with squall.crypto.base64url)", 3)
  end
end

-- Path and Domain values: a ";" would start another attribute.
local function attribute(v, what, name)
  if type(v) ~= "string" or v == "" or find(v, "[%z\1-\32;\127-\255]") then
    error("cookie " .. name .. ": " .. what .. " must be a non-empty string without spaces, ; or control characters", 3)
  end
  return v
end

-- opts: path (default "/"), domain, max_age (seconds; 0 deletes), expires (epoch seconds),
-- secure, http_only (default true), same_site ("lax" by default, "strict" or "none"; "none"
-- requires secure).
function _M.serialize(name, value, opts)
  check(name, value)
  opts = opts or {}
  local out = { name .. "=" .. value, "Path=" .. attribute(opts.path or "/", "path", name) }
  if opts.domain then out[#out + 1] = "Domain=" .. attribute(opts.domain, "domain", name) end
  if opts.max_age then out[#out + 1] = "Max-Age=" .. floor(opts.max_age) end
  if opts.expires then out[#out + 1] = "Expires=" .. date("!%a, %d %b %Y %H:%M:%S GMT", opts.expires) end
  local same_site = SAME_SITE[opts.same_site or "lax"]
  if not same_site then error("cookie " .. name .. ": same_site must be \"lax\", \"strict\" or \"none\"", 2) end
  if same_site == "None" and not opts.secure then
    error("cookie " .. name .. ": same_site = \"none\" needs secure = true (browsers drop it otherwise)", 2)
  end
  if opts.secure then out[#out + 1] = "Secure" end
  if opts.http_only ~= false then out[#out + 1] = "HttpOnly" end
  out[#out + 1] = "SameSite=" .. same_site
  return concat(out, "; ")
end

-- A Set-Cookie value that makes the browser forget the cookie (same path and domain as set).
function _M.delete(name, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.max_age, o.expires = 0, 0
  return _M.serialize(name, "", o)
end

-- The MAC covers a label as well as the value: with one secret for cookies and JWTs (or other
-- HMACs of the app), a value signed for one use cannot pass as signed for another.
local function mac(value, secret)
  return crypto.base64url(crypto.hmac_sha256(secret, "squall.cookie\0" .. value))
end

-- value .. "." .. its MAC, in cookie-safe characters (the value itself must be cookie-safe).
function _M.sign(value, secret)
  if type(secret) ~= "string" or secret == "" then error("cookie.sign: the secret must be a non-empty string", 2) end
  check("signed", value)
  return value .. "." .. mac(value, secret)
end

-- The value a signed cookie carries, or nil when its MAC does not match (forged, altered, or
-- signed with another secret).
function _M.unsign(signed, secret)
  if type(secret) ~= "string" or secret == "" then error("cookie.unsign: the secret must be a non-empty string", 2) end
  if type(signed) ~= "string" then return nil end
  local value, tag = match(signed, "^(.*)%.([%w_%-]+)$")
  if not value or not crypto.equals(tag, mac(value, secret)) then return nil end
  return value
end

return _M
