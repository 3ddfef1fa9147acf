-- squall.jwt: JSON Web Tokens signed with HMAC-SHA256 (HS256, RFC 7519), the common case of an
-- API that issues and checks its own tokens. Other algorithms are refused, "none" above all.
--
--   local jwt = require "squall.jwt"
--   local token = jwt.sign({ sub = user.id }, secret, { expires_in = 3600 })
--   local claims, err = jwt.verify(token, secret)    -- nil, "expired" / "bad signature" / ...

local crypto = require "squall.crypto"
local json = require "squall.json"

local type, time, floor = type, os.time, math.floor
local match, pairs = string.match, pairs

local _M = {}

local HEADER = crypto.base64url('{"alg":"HS256","typ":"JWT"}')

local function check_secret(secret, fn)
  if type(secret) ~= "string" or secret == "" then
    error("jwt." .. fn .. ": the secret must be a non-empty string", 3)
  end
end

-- claims: a table (copied; `iat` and, with opts.expires_in, `exp` are set in seconds since the
-- epoch, UTC). Returns the token.
function _M.sign(claims, secret, opts)
  if type(claims) ~= "table" then error("jwt.sign: claims must be a table", 2) end
  check_secret(secret, "sign")
  local body = {}
  for k, v in pairs(claims) do body[k] = v end
  local now = (opts and opts.now) or time()
  body.iat = body.iat or now
  if opts and opts.expires_in then body.exp = floor(now + opts.expires_in) end
  local signing_input = HEADER .. "." .. crypto.base64url(json.encode(body))
  return signing_input .. "." .. crypto.base64url(crypto.hmac_sha256(secret, signing_input))
end

-- Returns the claims, or nil and why: "malformed", "unsupported algorithm", "bad signature",
-- "expired", "not yet valid". opts.leeway: seconds of clock skew allowed on exp and nbf.
function _M.verify(token, secret, opts)
  check_secret(secret, "verify")
  if type(token) ~= "string" then return nil, "malformed" end
  local h, p, s = match(token, "^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]+)$")
  if not h then return nil, "malformed" end
  local header = json.decode(crypto.from_base64url(h) or "")
  if type(header) ~= "table" then return nil, "malformed" end
  -- The header is the attacker's: only the one algorithm this module signs with is accepted.
  if header.alg ~= "HS256" then return nil, "unsupported algorithm" end
  local sig = crypto.from_base64url(s)
  if not sig or not crypto.equals(sig, crypto.hmac_sha256(secret, h .. "." .. p)) then
    return nil, "bad signature"
  end
  local claims = json.decode(crypto.from_base64url(p) or "")
  if type(claims) ~= "table" then return nil, "malformed" end
  local now = (opts and opts.now) or time()
  local leeway = (opts and opts.leeway) or 0
  if claims.exp ~= nil and (type(claims.exp) ~= "number" or now >= claims.exp + leeway) then
    return nil, "expired"
  end
  if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now + leeway < claims.nbf) then
    return nil, "not yet valid"
  end
  return claims
end

-- The token of an `Authorization: Bearer <token>` (or `Token <token>`, as RealWorld clients
-- send) header, or nil.
function _M.from_header(value)
  if type(value) ~= "string" then return nil end
  return match(value, "^%s*[Bb]earer%s+(%S+)%s*$") or match(value, "^%s*Token%s+(%S+)%s*$")
end

return _M
