-- squall.model's queries: where / order_by / limit / offset and the calls that run them.
--
--   Post:where{ user_id = 3, status = { "draft", "live" }, deleted_at = db.null }
--       :where{ score = { gte = 10, lt = 100 } }
--       :where("title LIKE ? OR pinned = ?", "%lua%", true)
--       :order_by("pinned desc, id"):limit(20):all()
--
-- Names go through rows.ident (plain identifiers, backquoted); every value is a `?` parameter.
-- The keys of a where table are sorted, so one call site always makes the same SQL text and
-- reuses its prepared statement.

local db = require "squall.db"
local rows = require "squall.model.rows"

local type, pairs, ipairs, next, error, tostring, setmetatable, select, tonumber =
  type, pairs, ipairs, next, error, tostring, setmetatable, select, tonumber
local floor, ceil = math.floor, math.ceil
local concat, sort, unpack = table.concat, table.sort, unpack
local format = string.format
local tnew = require "table.new"

local ident, run, materialize = rows.ident, rows.run, rows.materialize
local null = db.null

local _M = {}

-- A Lua array (keys 1..n), which is an IN list; anything else with keys is a map of operators.
local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

local ops = {
  eq = "=", ne = "<>", gt = ">", gte = ">=", lt = "<", lte = "<=", like = "LIKE",
}

-- The SQL for `col <cond>` ("`a` = ?"), its values appended to params. `prefix` qualifies the
-- column ("t.") where a join makes a bare name ambiguous.
local function condition(m, col, v, params, prefix)
  local q = (prefix or "") .. ident(col, "column")
  if v == null then
    return q .. " IS NULL"
  elseif type(v) ~= "table" then
    params[#params + 1] = rows.to_db(m, col, v)
    return q .. " = ?"
  elseif is_list(v) then
    if #v == 0 then return "FALSE" end  -- nothing is in an empty list; SQL has no IN ()
    local list = {}
    for i = 1, #v do list[i] = rows.to_db(m, col, v[i]) end
    params[#params + 1] = list
    return q .. " IN (?)"
  end
  local names, parts = {}, {}
  for op in pairs(v) do names[#names + 1] = op end
  sort(names)
  for _, op in ipairs(names) do
    local arg = v[op]
    if ops[op] then
      if arg == null then error(format("squall.model: %s = { %s = db.null }: compare with NULL " ..
                                       "as %s = db.null or { null = true/false }", col, op, col), 4) end
      parts[#parts + 1] = q .. " " .. ops[op] .. " ?"
      params[#params + 1] = rows.to_db(m, col, arg)
    elseif op == "null" then
      parts[#parts + 1] = q .. (arg and " IS NULL" or " IS NOT NULL")
    elseif op == "in" or op == "not_in" then
      if type(arg) ~= "table" or not is_list(arg) then
        error(format("squall.model: %s = { %s = ... } needs an array", col, op), 4)
      end
      if #arg == 0 then
        parts[#parts + 1] = op == "in" and "FALSE" or "TRUE"
      else
        parts[#parts + 1] = q .. (op == "in" and " IN (?)" or " NOT IN (?)")
        local list = {}
        for i = 1, #arg do list[i] = rows.to_db(m, col, arg[i]) end  -- as each value is written
        params[#params + 1] = list
      end
    else
      error(format("squall.model: unknown operator %q for column %s (eq, ne, gt, gte, lt, lte, " ..
                   "like, in, not_in, null)", tostring(op), col), 4)
    end
  end
  return concat(parts, " AND ")
end

local NOT_A_COLUMN = "squall.model: where{...} takes column = value pairs; use where(\"sql ?\", value) for SQL"

-- A where table as SQL ("`a` = ? AND `b` IN (?)") and its parameters appended to params.
function _M.where_sql(m, conds, params, prefix)
  local first = next(conds)
  if first == nil then return "" end
  if next(conds, first) == nil then
    -- One column, most where{}s (a key, a foreign key): no list to sort and join.
    if type(first) ~= "string" then error(NOT_A_COLUMN, 3) end
    local sql = condition(m, first, conds[first], params, prefix)
    return sql
  end
  local cols = {}
  for col in pairs(conds) do
    if type(col) ~= "string" then error(NOT_A_COLUMN, 3) end
    cols[#cols + 1] = col
  end
  sort(cols)
  local parts = {}
  for i = 1, #cols do parts[i] = condition(m, cols[i], conds[cols[i]], params, prefix) end
  return concat(parts, " AND ")
end

-- "pinned desc, id" -> "`pinned` DESC, `id`"; anything but names and directions raises (at the
-- caller of order_sql's caller).
local function parse_order(spec, dir, prefix)
  if dir ~= nil then spec = spec .. " " .. tostring(dir) end
  local out = {}
  for item in (spec .. ","):gmatch("([^,]*),") do
    local name, d = item:match("^%s*([%a_][%w_]*)%s*(%a*)%s*$")
    d = d and d:upper()
    if not name or (d ~= "" and d ~= "ASC" and d ~= "DESC") then
      error(format("squall.model: order_by %q: expected column names, each with an optional asc or desc",
                   spec), 4)
    end
    out[#out + 1] = (prefix or "") .. ident(name, "column") .. (d ~= "" and " " .. d or "")
  end
  return concat(out, ", ")
end

-- Parsed order specs, by spec, direction and prefix: the same few strings on every request.
local orders, norders = {}, 0

function _M.order_sql(spec, dir, prefix)
  if type(spec) ~= "string" then error("squall.model: order_by takes a string such as \"id desc\"", 3) end
  local key = spec .. "\0" .. tostring(dir) .. "\0" .. (prefix or "")
  local cached = orders[key]
  if cached then return cached end
  local sql = parse_order(spec, dir, prefix)
  if norders < 1024 then
    orders[key], norders = sql, norders + 1
  end
  return sql
end

local Query = {}
Query.__index = Query
_M.Query = Query

-- A query: its model, `wsql` (its WHERE clause, "" for none), `params` (the values of its ?s, an
-- array that no query changes once made, so that refining a query without a new condition
-- shares it), `order`, `lim`, `off`, `preload_spec`.
local NO_PARAMS = {}

function _M.new(m)
  return setmetatable({ model = m, wsql = "", params = NO_PARAMS, order = nil, lim = nil, off = nil,
                        preload_spec = nil }, Query)
end

-- Each call returns a new query, so a base query can be kept and refined twice. Field by field,
-- not with pairs(), which LuaJIT leaves to the interpreter: a query is copied at every step of
-- every chain (find, where, order_by, paginate).
local function copy(q)
  return setmetatable({ model = q.model, wsql = q.wsql, params = q.params, order = q.order, lim = q.lim,
                        off = q.off, preload_spec = q.preload_spec }, Query)
end

-- where{ col = value, ... } or where("sql with ?", values...); several calls are joined by AND.
function Query:where(cond, ...)
  local c = copy(self)
  local old = self.params
  local params = tnew(#old + 1, 0)
  for i = 1, #old do params[i] = old[i] end
  local sql
  if type(cond) == "table" then
    sql = _M.where_sql(self.model, cond, params)
  elseif type(cond) == "string" then
    -- A fragment of the caller's own: its ?s are bound in order, never spliced.
    sql = "(" .. cond .. ")"
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      params[#params + 1] = v == nil and null or v
    end
  else
    error("squall.model: where takes a table of conditions or an SQL fragment with ?", 2)
  end
  if sql ~= "" then c.wsql = (self.wsql == "" and " WHERE " or self.wsql .. " AND ") .. sql end
  c.params = params
  return c
end

function Query:order_by(spec, dir)
  local c = copy(self)
  c.order = _M.order_sql(spec, dir)
  return c
end

local function count_arg(n, what)
  n = tonumber(n)
  if not n or n < 0 or n ~= floor(n) then
    error(format("squall.model: %s must be a whole number >= 0", what), 3)
  end
  return n
end

function Query:limit(n)
  local c = copy(self)
  c.lim = count_arg(n, "limit")
  return c
end

function Query:offset(n)
  local c = copy(self)
  c.off = count_arg(n, "offset")
  return c
end

-- The largest row count LIMIT takes with OFFSET and no limit of the caller's (MySQL's own
-- advice is a very large number); 2^53 - 1 still binds as an exact integer.
local NO_LIMIT = 9007199254740991

-- The SELECT and its parameters: the query's own, or a copy with LIMIT's and OFFSET's after them.
local function select_sql(q, lim, off)
  local params = q.params
  local sql = "SELECT * FROM " .. ident(q.model.table, "table") .. q.wsql
  if q.order then sql = sql .. " ORDER BY " .. q.order end
  if lim or off then
    local n = #params
    params = tnew(n + 2, 0)
    for i = 1, n do params[i] = q.params[i] end
    sql = sql .. " LIMIT ?"
    params[#params + 1] = lim or NO_LIMIT
    if off and off > 0 then
      sql = sql .. " OFFSET ?"
      params[#params + 1] = off
    end
  end
  return sql, params
end

-- squall.model.relations' preload, set by squall.model (relations needs this module first).
local preload

function _M.set_preloader(fn) preload = fn end

-- query:preload(spec): the rows this query returns come with those relations loaded.
function Query:preload(spec)
  local c = copy(self)
  c.preload_spec = spec
  return c
end

local function fetch(q, lim, off)
  local sql, params = select_sql(q, lim, off)
  local list = materialize(q.model, run(sql, unpack(params, 1, #params)))
  if q.preload_spec then preload(list, q.preload_spec) end
  return list
end

-- Every matching row, as objects loaded together (their relations load for all of them at once).
function Query:all()
  return fetch(self, self.lim, self.off)
end

-- The first row by the query's order (by primary key without one), or nil.
function Query:first()
  local q = self
  if not q.order then q = q:order_by(q.model.pk) end
  return fetch(q, 1, q.off)[1]
end

-- How many rows match (limit and offset do not apply).
function Query:count()
  local sql = "SELECT COUNT(*) AS n FROM " .. ident(self.model.table, "table") .. self.wsql
  return run(sql, unpack(self.params, 1, #self.params))[1].n
end

function Query:exists()
  local sql = "SELECT 1 AS found FROM " .. ident(self.model.table, "table") .. self.wsql .. " LIMIT 1"
  return run(sql, unpack(self.params, 1, #self.params))[1] ~= nil
end

-- One page: { items, total, pages, page, per_page }. `page` counts from 1; nil, junk or < 1
-- is page 1, so a handler may pass req.query.page as it comes. A page past the end has no
-- items and the right total. The total costs a COUNT(*) only when the page alone cannot tell
-- it: a page that is neither full nor empty ends the list.
function Query:paginate(page, per_page)
  per_page = per_page or 20
  if type(per_page) ~= "number" or per_page < 1 or per_page ~= floor(per_page) then
    error("squall.model: paginate's per_page must be a whole number >= 1", 2)
  end
  page = floor(tonumber(page) or 1)
  if page < 1 then page = 1 end
  local off = (page - 1) * per_page
  local q = self.order and self or self:order_by(self.model.pk)
  local items = fetch(q, per_page, off)
  local total
  if #items > 0 and #items < per_page then
    total = off + #items
  elseif #items == 0 and page == 1 then
    total = 0
  else
    total = self:count()
  end
  return { items = items, total = total, pages = ceil(total / per_page), page = page, per_page = per_page }
end

-- UPDATE ... SET for every matching row at once (no validation, no timestamps, no objects);
-- returns the number of rows changed.
function Query:update_all(values)
  local m = self.model
  local cols = {}
  for col in pairs(values) do cols[#cols + 1] = col end
  if #cols == 0 then return 0 end
  sort(cols)
  local sets, params = {}, {}
  for i, col in ipairs(cols) do
    sets[i] = ident(col, "column") .. " = ?"
    local v = rows.to_db(m, col, values[col])
    params[i] = v == nil and null or v
  end
  for i = 1, #self.params do params[#params + 1] = self.params[i] end
  local sql = "UPDATE " .. ident(m.table, "table") .. " SET " .. concat(sets, ", ") .. self.wsql
  local n = run(sql, unpack(params, 1, #params)).affected_rows
  rows.clear_identity(m)  -- objects already loaded hold the old values
  return n
end

-- DELETE every matching row; returns how many went.
function Query:delete_all()
  local sql = "DELETE FROM " .. ident(self.model.table, "table") .. self.wsql
  local n = run(sql, unpack(self.params, 1, #self.params)).affected_rows
  -- Objects of deleted rows must not come back from the identity map.
  rows.clear_identity(self.model)
  return n
end

return _M
