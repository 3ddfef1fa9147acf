-- squall.model: tables as models, rows as objects, relations that load on first access.
--
--   local model = require "squall.model"
--   local Post = model.define("posts", {
--     timestamps = true,
--     types = { published = "boolean", meta = "json" },
--     relations = {
--       author   = { belongs_to = "users", foreign_key = "user_id" },
--       comments = { has_many = "comments", order_by = "id" },
--     },
--     validate = { title = { required = true, type = "string", max = 200 } },
--   })
--   for _, post in ipairs(Post:where{ published = true }:limit(20):all()) do
--     print(post.author.name, #post.comments)   -- 3 queries in all, however many posts
--   end
--
-- A lazy load is a plain field access because db.query yields the request's coroutine; the
-- rows loaded by one query remember each other, so the first access of a relation on one of
-- them loads it for all of them with one IN query. Model queries join the db.transaction the
-- code runs inside; a request sees one object per row (identity map).

local squall = require "squall"
local db = require "squall.db"
local context = require "squall.context"
local rows = require "squall.model.rows"
local query = require "squall.model.query"
local relations = require "squall.model.relations"

local type, pairs, ipairs, error, tostring, rawget, getmetatable, setmetatable, pcall, next =
  type, pairs, ipairs, error, tostring, rawget, getmetatable, setmetatable, pcall, next
local concat, unpack = table.concat, unpack
local format, date = string.format, os.date

local ident, run, null = rows.ident, rows.run, db.null

local _M = {}

-- ---- errors ---------------------------------------------------------------------------------

-- Validation and duplicate-key errors are HTTP errors (squall.abort's kind): uncaught, the host
-- answers 422 with { errors = { field = { messages } } }; caught, `kind`, `errors` (and for a
-- duplicate `key` and `columns`) say what went wrong.
local function invalid(m, errors, level)
  local e = squall.http_error(422, { errors = errors })
  e.kind, e.errors, e.model = "validation", errors, m.name
  error(e, level + 1)
end

function _M.is_invalid(e)
  return squall.is_http_error(e) and (e.kind == "validation" or e.kind == "duplicate")
end

function _M.is_duplicate(e)
  return squall.is_http_error(e) and e.kind == "duplicate"
end

-- ---- validation -----------------------------------------------------------------------------

-- Rules per field, as the example app's validate.lua has them, plus a few:
--   required = true     present, not NULL, not blank
--   type = "string" | "number" | "boolean" | "table"
--   max, min            length of a string, or bounds of a number
--   pattern = "^%d+$"   a Lua pattern a string must match
--   one_of = { ... }    the allowed values
--   check = function(value, row) return nil or "message" end
-- `absent_ok`: nil is not a missing value here (a loaded row that never had the field).
local function check_field(rule, v, row, absent_ok, add)
  if v == nil or v == null or (type(v) == "string" and v:match("^%s*$")) then
    if rule.required and not (v == nil and absent_ok) then add("is required") end
    if v == nil or v == null then return end
  end
  if rule.type and type(v) ~= rule.type then return add("must be a " .. rule.type) end
  local size = type(v) == "string" and #v or type(v) == "number" and v
  if size and rule.max and size > rule.max then
    add(type(v) == "string" and format("must be at most %d characters", rule.max)
                            or format("must be at most %s", tostring(rule.max)))
  end
  if size and rule.min and size < rule.min then
    add(type(v) == "string" and format("must be at least %d characters", rule.min)
                            or format("must be at least %s", tostring(rule.min)))
  end
  if rule.pattern and type(v) == "string" and not v:match(rule.pattern) then add("has an invalid format") end
  if rule.one_of then
    local ok = false
    for _, allowed in ipairs(rule.one_of) do ok = ok or allowed == v end
    if not ok then add("is not one of the allowed values") end
  end
  if rule.check then
    local msg = rule.check(v, row)
    if msg then add(msg) end
  end
end

-- { field = { messages } } for the row, or nil when it is valid.
local function errors_of(m, row)
  local saved = rows.state(row).saved
  local errors
  for field, rule in pairs(m.validate) do
    local function add(msg)
      errors = errors or {}
      local l = errors[field]
      if not l then
        l = {}
        errors[field] = l
      end
      l[#l + 1] = msg
    end
    -- A new row must have the field; a loaded one must not have lost it (set to nil, it would
    -- be written as NULL).
    check_field(rule, rawget(row, field), row, saved ~= nil and saved[field] == nil, add)
  end
  return errors
end

-- ---- writing --------------------------------------------------------------------------------

-- The server's clock in UTC, whatever the database's time_zone: a model's timestamps mean the
-- same thing on every server that writes them.
local function now_utc()
  return date("!%Y-%m-%d %H:%M:%S")
end

local function stamp(m, row, cols)
  local t = now_utc()
  for _, col in ipairs(cols) do
    row[col] = m.types[col] == "iso8601" and (t:gsub(" ", "T") .. "Z") or t
  end
end

-- Runs an INSERT or UPDATE; a duplicate key becomes a 422 naming the key and its columns.
-- MariaDB's message quotes the duplicate value, which must not reach logs or clients: only
-- the key's name is taken from it.
local function write(m, sql, ...)
  local ok, res = pcall(run, sql, ...)
  if ok then return res end
  if not (db.is_error(res) and res.code == 1062) then error(res, 0) end
  local key = tostring(res.message):match("for key '([^']*)'") or "?"
  key = key:match("([^.]*)$")  -- MySQL 8 says 'table.key'
  local cols = {}
  for _, r in ipairs(run("SELECT COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = " ..
                         "DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ? ORDER BY SEQ_IN_INDEX", m.table, key)) do
    cols[#cols + 1] = r.c
  end
  local errors = {}
  for _, c in ipairs(cols) do errors[c] = { "is already taken" } end
  if not next(errors) then errors[key] = { "is already taken" } end
  local e = squall.http_error(422, { errors = errors })
  e.kind, e.errors, e.model, e.key, e.columns, e.code = "duplicate", errors, m.name, key, cols, 1062
  e.detail = format("duplicate value for unique key %s of %s (%s)", key, m.table, concat(cols, ", "))
  error(e, 0)
end

local Row = {}

-- Inserts a new row or updates the changed columns of a loaded one (nothing to change: no
-- query, returns false). Validates first; raises a 422 error (see is_invalid).
function Row:save()
  local st = rows.state(self)
  local m = st.model
  local creating = st.saved == nil
  local errors = errors_of(m, self)
  if errors then invalid(m, errors, 2) end
  if creating then
    if m.timestamps then stamp(m, self, m.timestamps) end
    local cols, vals = rows.changes(self)
    local names = {}
    for i, c in ipairs(cols) do names[i] = ident(c, "column") end
    local sql = "INSERT INTO " .. ident(m.table, "table") .. " (" .. concat(names, ", ") .. ")"
    local res = #cols > 0 and write(m, sql .. " VALUES (?)", vals) or write(m, sql .. " VALUES ()")
    if rawget(self, m.pk) == nil and res.insert_id and res.insert_id ~= 0 then
      self[m.pk] = res.insert_id
      cols[#cols + 1], vals[#vals + 1] = m.pk, res.insert_id
    end
    rows.mark_saved(self, cols, vals)
    rows.remember(self)
    return true
  end
  local cols = rows.changes(self)
  if #cols == 0 then return false end
  local stamped = m.timestamps and m.timestamps[2]
  if stamped then stamp(m, self, { stamped }) end
  local vals
  cols, vals = rows.changes(self)
  -- Within the second the row was created or last saved the stamp is the same value; it is
  -- still written, so the UPDATE's shape does not depend on the clock.
  if stamped and rows.to_db(m, stamped, self[stamped]) == st.saved[stamped] then
    cols[#cols + 1] = stamped
    vals[#vals + 1] = rows.to_db(m, stamped, self[stamped])
  end
  local sets = {}
  for i, c in ipairs(cols) do sets[i] = ident(c, "column") .. " = ?" end
  vals[#vals + 1] = st.saved[m.pk]
  write(m, "UPDATE " .. ident(m.table, "table") .. " SET " .. concat(sets, ", ") .. " WHERE " ..
           ident(m.pk, "column") .. " = ?", unpack(vals, 1, #vals))
  vals[#vals] = nil
  rows.mark_saved(self, cols, vals)
  return true
end

-- Sets the fields, then saves the ones that changed.
function Row:update(values)
  for k, v in pairs(values) do self[k] = v end
  return self:save()
end

function Row:delete()
  local st = rows.state(self)
  local m = st.model
  local id = st.saved and st.saved[m.pk]
  if id == nil then error("squall.model: delete of a " .. m.table .. " row that was never saved", 2) end
  run("DELETE FROM " .. ident(m.table, "table") .. " WHERE " .. ident(m.pk, "column") .. " = ?", id)
  rows.forget(self)
end

-- The columns changed in Lua and not saved yet.
function Row:changed()
  return (rows.changes(self))
end

-- Reads the row again, dropping unsaved changes and loaded relations.
function Row:reload()
  local st = rows.state(self)
  local m = st.model
  local r = run(m.find_sql, rawget(self, m.pk))[1]
  if not r then error("squall.model: " .. m.table .. " row " .. tostring(rawget(self, m.pk)) .. " is gone", 2) end
  for k in pairs(self) do self[k] = nil end
  st.rel = nil
  rows.fill(self, r)
  rows.remember(self)
  return self
end

-- A row's fields: columns first (they are plain fields), then these methods, then relations.
rows.set_index(function(row, key)
  local f = Row[key]
  if f ~= nil then return f end
  local st = getmetatable(row)
  local rel = st.model.relations[key]
  if rel then return relations.get(row, st, key, rel) end
  return nil
end)

-- ---- models ---------------------------------------------------------------------------------

local Model = {}
Model.__index = Model

-- model.define(name, opts) -> the model, which relations of other models name. opts:
--   table       = the table's name, when it is not the model's name
--   primary_key = "id"
--   timestamps  = true (created_at, updated_at) or { "created", "modified" }
--   types       = { column = "boolean" | "json" | "iso8601" }
--   relations   = { name = { belongs_to | has_one | has_many | many_to_many | count = model or name, ... } }
--   validate    = { field = { rules } }
--   strict      = true: every lazy load raises (preload what you use)
-- Defining the same name again (a reload, a test) replaces the model for relations naming it.
function _M.define(name, opts)
  opts = opts or {}
  if type(name) ~= "string" then error("squall.model: model.define(name, opts): name must be a string", 2) end
  local table_name = opts.table or name
  ident(table_name, "table")
  local m = setmetatable({ name = name, table = table_name, pk = opts.primary_key or "id", types = opts.types or {},
                           validate = opts.validate or {}, strict = opts.strict and true or false,
                           relations = {} }, Model)
  m.find_sql = "SELECT * FROM " .. ident(table_name, "table") .. " WHERE " .. ident(m.pk, "column") .. " = ? LIMIT 1"
  rows.check_types(m.types, "model " .. table_name)
  m.typed = next(m.types) ~= nil
  if opts.timestamps == true then
    m.timestamps = { "created_at", "updated_at" }
  elseif type(opts.timestamps) == "table" then
    m.timestamps = { ident(opts.timestamps[1], "column") and opts.timestamps[1],
                     ident(opts.timestamps[2], "column") and opts.timestamps[2] }
  end
  for field, rule in pairs(m.validate) do
    if type(rule) ~= "table" then
      error(format("squall.model: model %s: the rules of %s must be a table", table_name, tostring(field)), 2)
    end
  end
  for name, spec in pairs(opts.relations or {}) do
    if Row[name] then
      error(format("squall.model: model %s: relation %q would hide the row method of that name", table_name, name), 2)
    end
    m.relations[name] = relations.normalize(m, name, spec)
  end
  rows.registry[name] = m
  return m
end

-- A row object not saved yet.
function Model:new(values)
  return rows.new(self, values)
end

-- Validates, inserts and returns the new row (its primary key set from the insert).
function Model:create(values)
  local row = rows.new(self, values)
  row:save()
  return row
end

-- The row with this primary key, or nil. Always asks the database (a row of this request's
-- identity map takes the fresh values and is the object returned).
function Model:find(id)
  if id == nil or id == null then return nil end
  if type(id) == "table" then error("squall.model: find takes one primary key value; where{} takes lists", 2) end
  -- Not built as where{}:limit(1): the most common query of all, its SQL made once per model.
  return rows.materialize(self, run(self.find_sql, rows.to_db(self, self.pk, id)))[1]
end

-- { field = { messages } } for a row, or nil.
function Model:errors(row)
  return errors_of(self, row)
end

for _, name in ipairs { "where", "order_by", "limit", "offset", "all", "first", "count", "exists",
                        "paginate", "update_all", "delete_all" } do
  local method = query.Query[name]
  Model[name] = function(self, ...) return method(query.new(self), ...) end
end

-- Loads relations for a list of rows ahead of use: Post:preload(posts, { author = "profile",
-- comments = true }); nested ones load for all their rows at once.
function Model:preload(list, spec)
  return relations.preload(list, spec)
end

query.set_preloader(relations.preload)

_M.preload = relations.preload

-- { ["posts.author"] = n }: lazy loads of this request that ran a query for a single row (N+1
-- suspects).
_M.report = relations.report

-- Strict loading for the rest of this request (or, in a spec, this test): any lazy load raises.
function _M.strict(on)
  context.current().request.strict = on ~= false
end

-- Runs fn inside db.transaction; model queries inside join it.
_M.transaction = db.transaction

return _M
