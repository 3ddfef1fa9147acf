-- squall.cors: Cross-Origin Resource Sharing as middleware. It answers preflight requests
-- (OPTIONS with Access-Control-Request-Method) for every path before routing, so no route needs
-- an OPTIONS handler and unknown paths stay 404; and it adds the CORS headers to every response
-- to an allowed origin, errors included.
--
--   app:use(squall.cors{ origins = { "https://app.example.com" }, credentials = true })
--   app:use("/api", squall.cors{ origins = "*" })

local type, pairs, tostring, concat, lower = type, pairs, tostring, table.concat, string.lower

local DEFAULT_METHODS = "GET, HEAD, PUT, PATCH, POST, DELETE"

local function list(v, what)
  if v == nil then return nil end
  if type(v) == "string" then return v end
  if type(v) ~= "table" then error("squall.cors: " .. what .. " must be a string or an array of strings", 3) end
  return concat(v, ", ")
end

-- Adds `token` to a Vary header value unless it is there.
local function vary(headers, token)
  local v = headers.Vary or headers.vary
  if v == nil then headers.Vary = token; return end
  if not lower(v):find(lower(token), 1, true) then headers.Vary = v .. ", " .. token end
end

-- opts:
--   origins      "*", one origin, or an array of them (exact "scheme://host[:port]" strings);
--                a function(origin) -> boolean for anything else
--   methods      allowed methods for preflight (string or array; default the usual six)
--   headers      allowed request headers (default: whatever the preflight asks for)
--   expose       response headers the browser may read (string or array)
--   credentials  true: allow cookies and Authorization (needs listed origins: never with "*")
--   max_age      seconds a browser may cache a preflight answer
return function(opts)
  opts = opts or {}
  local origins = opts.origins or "*"
  if origins == "*" and opts.credentials then
    -- Echoing every origin with credentials would let any site read its visitors' data here.
    error("squall.cors: credentials = true needs the allowed origins listed (or a function), not \"*\"", 2)
  end
  local allowed
  if origins == "*" then
    allowed = function() return true end
  elseif type(origins) == "string" then
    allowed = function(o) return o == origins end
  elseif type(origins) == "table" then
    local set = {}
    for _, o in pairs(origins) do set[o] = true end
    allowed = function(o) return set[o] == true end
  elseif type(origins) == "function" then
    allowed = origins
  else
    error("squall.cors: origins must be \"*\", a string, an array or a function", 2)
  end
  local methods = list(opts.methods, "methods") or DEFAULT_METHODS
  local allow_headers = list(opts.headers, "headers")
  local expose = list(opts.expose, "expose")
  local credentials = opts.credentials == true
  local max_age = opts.max_age and tostring(math.floor(opts.max_age))
  -- A list must echo the one origin it allows, so the answer depends on Origin: every response
  -- says so (Vary), or a shared cache would hand one origin's answer to another.
  local star = origins == "*"

  local function origin_headers(h, origin)
    h["Access-Control-Allow-Origin"] = star and "*" or origin
    if credentials then h["Access-Control-Allow-Credentials"] = "true" end
  end

  local m = {}

  function m.before(req)
    local origin = req.headers.origin
    local asked = req.headers["access-control-request-method"]
    if req.method ~= "OPTIONS" or not origin or not asked then return end
    -- A preflight: answered here whatever the route. Refused origins get no CORS headers, which
    -- is how a browser learns the answer is no.
    local h = {}
    if not star then vary(h, "Origin") end
    if allowed(origin) then
      origin_headers(h, origin)
      h["Access-Control-Allow-Methods"] = methods
      local req_headers = req.headers["access-control-request-headers"]
      if allow_headers then
        h["Access-Control-Allow-Headers"] = allow_headers
      elseif req_headers then
        h["Access-Control-Allow-Headers"] = req_headers
        vary(h, "Access-Control-Request-Headers")
      end
      if max_age then h["Access-Control-Max-Age"] = max_age end
    end
    return 204, h, nil
  end

  function m.after(req, res)
    if res.headers["Access-Control-Allow-Methods"] then return end   -- the preflight's own answer
    if not star then vary(res.headers, "Origin") end
    local origin = req.headers.origin
    if not origin or not allowed(origin) then return end
    origin_headers(res.headers, origin)
    if expose then res.headers["Access-Control-Expose-Headers"] = expose end
  end

  return m
end
