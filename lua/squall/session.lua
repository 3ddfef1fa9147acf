-- squall.session: a session kept in a signed cookie. The data is JSON in the cookie itself (no
-- server-side store), so it is tamper-proof but readable by the client, and small (browsers keep
-- at most about 4 KB per cookie).
--
--   app:use(squall.session{ secret = squall.settings.session_secret, max_age = 86400 })
--   app:post("/login", function(req) req:session().user_id = 42; return "ok" end)
--   app:get("/me", function(req) return { id = req:session().user_id } end)
--
-- req:session() loads the cookie on first use; after the handler the middleware writes the
-- cookie back only when the data changed, and deletes it when the session became empty
-- (squall.session.destroy(req) empties it).

local crypto = require "squall.crypto"
local cookie = require "squall.cookie"
local json = require "squall.json"
local request = require "squall.request"

local type, pairs, next, rawget, rawset, setmetatable, tonumber = type, pairs, next, rawget, rawset, setmetatable, tonumber
local time, match = os.time, string.match

local MAX_COOKIE = 4000   -- bytes of name=value that every browser keeps

local CFG = "_session_cfg"

-- req:session(): the session table of this request (a fresh one when there is none or the cookie
-- is forged, altered or expired). `squall.session.destroy(req)` forgets it.
function request.methods.session(req)
  local s = rawget(req, "_session")
  if s then return s end
  local cfg = rawget(req, CFG)
  if not cfg then
    error("req:session(): add the middleware first: app:use(squall.session{ secret = ... })", 2)
  end
  s = {}
  local raw = req:cookie(cfg.name)
  local payload = raw and cookie.unsign(raw, cfg.secret)
  if payload then
    local issued, body = match(payload, "^(%d+)%.(.*)$")
    local doc = body and json.decode(crypto.from_base64url(body) or "")
    if type(doc) == "table" and (not cfg.max_age or time() - tonumber(issued) < cfg.max_age) then s = doc end
  end
  rawset(req, "_session", s)
  rawset(req, "_session_was", json.encode(s))
  return s
end

local _M = {}

-- Empties the session and deletes its cookie at the end of the request.
function _M.destroy(req)
  local s = req:session()
  for k in pairs(s) do s[k] = nil end
end

-- opts: secret (required: the HMAC key), name (default "session"), max_age (seconds; also the
-- cookie's Max-Age; default: a browser-session cookie that never expires here), and the cookie
-- attributes of squall.cookie.serialize (path, domain, secure, http_only, same_site).
function _M.new(opts)
  if type(opts) ~= "table" or type(opts.secret) ~= "string" or #opts.secret < 16 then
    error("squall.session: opts.secret must be a string of at least 16 bytes", 2)
  end
  local cfg = { secret = opts.secret, name = opts.name or "session", max_age = opts.max_age }
  local attrs = {}
  for _, k in pairs({ "path", "domain", "secure", "http_only", "same_site" }) do attrs[k] = opts[k] end
  attrs.max_age = opts.max_age
  cookie.serialize(cfg.name, "x", attrs)   -- bad attributes fail now, not on the first request

  local m = {}
  function m.before(req) rawset(req, CFG, cfg) end
  function m.after(req, res)
    local s = rawget(req, "_session")
    if not s then return end                         -- never read: nothing to write
    local now = json.encode(s)
    if now == rawget(req, "_session_was") then return end
    local value
    if next(s) == nil then
      value = cookie.delete(cfg.name, attrs)
    else
      value = cookie.serialize(cfg.name, cookie.sign(time() .. "." .. crypto.base64url(now), cfg.secret), attrs)
      if #value > MAX_COOKIE + 200 then
        error("squall.session: the session is " .. #now .. " bytes of JSON, too big for a cookie", 0)
      end
    end
    local h = res.headers
    local prev = h["Set-Cookie"]
    if prev == nil then
      h["Set-Cookie"] = value
    elseif type(prev) == "table" then
      prev[#prev + 1] = value
    else
      h["Set-Cookie"] = { prev, value }
    end
  end
  return m
end

return setmetatable(_M, { __call = function(_, opts) return _M.new(opts) end })
