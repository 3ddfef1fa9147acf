-- Small validation helpers for the example app: collect field messages, then answer 422 with
-- all of them at once, the way API clients want to display them.
local squall = require "squall"

local type, pairs, next = type, pairs, next

local _M = {}

-- rules: { field = { required = true, type = "string", max = 200 } }
-- Returns the cleaned values, or ends the request with 422 { errors = { field = message } }.
function _M.check(doc, rules, partial)
  if type(doc) ~= "table" then
    squall.abort(422, "expected a JSON object")
  end
  local errors, out = {}, {}
  for field, rule in pairs(rules) do
    local v = doc[field]
    if v == nil then
      if rule.required and not partial then errors[field] = "is required" end
    elseif type(v) ~= rule.type then
      errors[field] = "must be a " .. rule.type
    elseif rule.type == "string" and rule.max and #v > rule.max then
      errors[field] = "must be at most " .. rule.max .. " characters"
    elseif rule.type == "string" and rule.required and v:match("^%s*$") then
      errors[field] = "must not be blank"
    else
      out[field] = v
    end
  end
  for field in pairs(doc) do
    if not rules[field] then errors[field] = "is not a known field" end
  end
  if next(errors) then squall.abort(422, { errors = errors }) end
  return out
end

return _M
