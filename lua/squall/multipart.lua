-- multipart/form-data (RFC 7578) bodies: form fields and uploaded files. The host has already
-- bounded the body (limits.max_body_bytes); this bounds the number of parts and the size of each
-- part's headers, and refuses anything malformed with a message (the caller makes it a 400).
--
-- A part's data is a substring of the body: no copy beyond that, no temporary files.

local router = require "squall.router"

local type, concat = type, table.concat
local unescape = router.unescape
local find, sub, match, lower, gmatch = string.find, string.sub, string.match, string.lower, string.gmatch

local _M = {}

_M.MAX_PARTS = 1000
_M.MAX_PART_HEADER_BYTES = 8192

-- The boundary of a Content-Type value, or nil. RFC 2046: 1 to 70 characters, quoted or not.
function _M.boundary(content_type)
  if type(content_type) ~= "string" then return nil end
  local mt, params = match(content_type, "^%s*([^;%s]+)%s*(.*)$")
  if not mt or lower(mt) ~= "multipart/form-data" then return nil end
  local b = match(params, ";%s*[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=\"([^\"]+)\"")
         or match(params, ";%s*[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=([^;%s]+)")
  if not b or #b > 70 then return nil end
  return b
end

-- A header's parameters (name="x"; filename="y"): quoted values may hold ; and escaped quotes.
local function disposition(value)
  local kind, rest = match(value, "^%s*([^;%s]+)(.*)$")
  if not kind then return nil end
  local params = {}
  local i = 1
  while true do
    local s, e, key = find(rest, "^%s*;%s*([%w%-%*_]+)%s*=%s*", i)
    if not s then break end
    local v
    if sub(rest, e + 1, e + 1) == '"' then
      local j, out = e + 2, {}
      while true do
        local c = sub(rest, j, j)
        if c == "" then return nil end                      -- an unterminated quote
        if c == '"' then break end
        if c == "\\" then j = j + 1; c = sub(rest, j, j) end
        out[#out + 1] = c
        j = j + 1
      end
      v, i = concat(out), j + 1
    else
      local vs, ve = find(rest, "^[^;%s]*", e + 1)
      v, i = sub(rest, vs, ve), ve + 1
    end
    params[lower(key)] = v
  end
  return lower(kind), params
end

-- Parses `body` with `boundary`. Returns { fields = { name = value or {values...} },
-- files = { name = the first file under that name }, parts = { every part, in order } } where a
-- part is { name =, filename =, content_type =, headers = {lowercase = value}, data = } and a
-- file is a part with a filename. Or nil and why.
function _M.parse(body, boundary, opts)
  local max_parts = (opts and opts.max_parts) or _M.MAX_PARTS
  local max_header = (opts and opts.max_header_bytes) or _M.MAX_PART_HEADER_BYTES
  local dash = "--" .. boundary
  local delim = "\r\n" .. dash
  -- The first delimiter may be preceded by a preamble, which is ignored.
  local pos
  if sub(body, 1, #dash) == dash then
    pos = #dash + 1
  else
    local s, e = find(body, delim, 1, true)
    if not s then return nil, "no multipart boundary in the body" end
    pos = e + 1
  end
  local form = { fields = {}, files = {}, parts = {} }
  while true do
    -- After a delimiter: "--" ends the body; otherwise optional whitespace, then CRLF.
    if sub(body, pos, pos + 1) == "--" then return form end
    local ws = match(body, "^[ \t]*\r\n", pos)
    if not ws then return nil, "malformed boundary line" end
    pos = pos + #ws
    if #form.parts >= max_parts then return nil, "more than " .. max_parts .. " parts" end
    local hend = find(body, "\r\n\r\n", pos, true)
    local empty_headers = sub(body, pos, pos + 1) == "\r\n"
    if not hend and not empty_headers then return nil, "part headers never end" end
    local head_end = empty_headers and pos - 1 or hend
    if head_end - pos > max_header then return nil, "part headers over " .. max_header .. " bytes" end
    local part = { headers = {} }
    if not empty_headers then
      for line in gmatch(sub(body, pos, head_end - 1) .. "\r\n", "(.-)\r\n") do
        local k, v = match(line, "^([!#$%%&'*+%-.^_`|~%w]+):%s*(.-)%s*$")
        if not k then return nil, "malformed part header" end
        part.headers[lower(k)] = v
      end
    end
    local data_start = empty_headers and pos + 2 or hend + 4
    local s, e = find(body, delim, data_start, true)
    if not s then return nil, "the body ends inside a part" end
    part.data = sub(body, data_start, s - 1)
    pos = e + 1
    local cd = part.headers["content-disposition"]
    local kind, params
    if cd then kind, params = disposition(cd) end
    if kind ~= "form-data" or not params.name then
      return nil, "a part without Content-Disposition: form-data; name=..."
    end
    part.name = params.name
    -- RFC 5987: charset'language'percent-encoded. A name the client sent is only a hint: never
    -- use it as a path (it may hold "../" or, decoded, a slash).
    local ext = params["filename*"] and match(params["filename*"], "^[^']*'[^']*'(.*)$")
    part.filename = ext and unescape(ext) or params.filename
    part.content_type = part.headers["content-type"] or (part.filename and "application/octet-stream" or "text/plain")
    form.parts[#form.parts + 1] = part
    if part.filename then
      form.files[part.name] = form.files[part.name] or part
    else
      -- Repeated fields become an array, as in req.query and req:form().
      local cur = form.fields[part.name]
      if cur == nil then
        form.fields[part.name] = part.data
      elseif type(cur) == "table" then
        cur[#cur + 1] = part.data
      else
        form.fields[part.name] = { cur, part.data }
      end
    end
  end
end

return _M
