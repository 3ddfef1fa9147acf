-- squall.model's rows: turning result rows into objects, the per-request identity map, column
-- types, and the one place model SQL runs (joining the caller's transaction).
--
-- A row object keeps its columns as plain fields, so it reads like the row db.query returns and
-- encodes to the same JSON. Everything else about it (its model, the column values as last
-- read or written, the rows loaded with it, its loaded relations) lives in its metatable, which
-- the JSON encoder ignores: no side table with weak keys, which in LuaJIT (no ephemerons) would
-- keep a row alive through its own siblings. The rows of one query share one metatable until
-- one of them needs a state of its own (see `state`).

local db = require "squall.db"
local context = require "squall.context"
local json = require "squall.json"
local cjson = require "cjson.safe"

local type, pairs, error, tostring, rawget, getmetatable, setmetatable =
  type, pairs, error, tostring, rawget, getmetatable, setmetatable
local sort = table.sort
local tnew = require "table.new"
local format = string.format

local _M = {}

local null = db.null
_M.null = null

-- Model name -> model, filled by model.define when an app's modules load. Shared by every
-- request of the worker on purpose: definitions are code, not request state.
_M.registry = {}

-- ---- SQL ------------------------------------------------------------------------------------

-- Table and column names go into SQL text, so they must be plain identifiers; values never do.
-- Checked names are remembered (a query names the same few on every request); the memory is
-- bounded in case names come from outside.
local quoted, nquoted = {}, 0

local function ident(name, what)
  local q = quoted[name]
  if q then return q end
  if type(name) ~= "string" or #name > 64 or not name:match("^[%a_][%w_]*$") then
    error(format("squall.model: %s %q is not a plain identifier (letters, digits and _, at most 64)",
                 what or "name", tostring(name)), 3)
  end
  q = "`" .. name .. "`"
  if nquoted < 4096 then
    quoted[name], nquoted = q, nquoted + 1
  end
  return q
end
_M.ident = ident

-- Inside db.transaction (the caller's, or the one its parent task was in) model queries run on
-- the transaction's connection; outside, on the pool. Nobody has to pass `tx` around.
function _M.run(sql, ...)
  local tx = db.current_transaction()
  if tx then return tx:query(sql, ...) end
  return db.query(sql, ...)
end

-- ---- types ----------------------------------------------------------------------------------

-- types = { column = "boolean" | "json" | "iso8601" }: how a column's value is seen in Lua.
-- `from_db` runs on each value read, `to_db` on each value written and on each value compared
-- with what was read, so a JSON table edited in place counts as a change.
local converters = {
  boolean = {
    from_db = function(v) return v ~= 0 and v ~= "0" end,
    to_db = function(v) return v end,  -- squall.db binds booleans as 1 and 0
  },
  json = {
    from_db = function(v, col)
      local doc, err = cjson.decode(v)
      if doc == nil and v ~= "null" then
        error(format("squall.model: column %s holds invalid JSON (%s)", col, tostring(err)), 0)
      end
      return doc == nil and null or doc
    end,
    to_db = function(v) return json.encode(v) end,
  },
  -- DATETIME "2024-05-01 12:30:00[.ffffff]" <-> "2024-05-01T12:30:00[.ffffff]Z". The column holds
  -- UTC by convention (timestamps are written in UTC); the database's time_zone plays no part.
  iso8601 = {
    from_db = function(v) return (v:gsub("^(%d+%-%d+%-%d+) ", "%1T")) .. "Z" end,
    to_db = function(v)
      if type(v) ~= "string" then return v end
      return (v:gsub("^(%d+%-%d+%-%d+)T(.-)Z$", "%1 %2"))
    end,
  },
}

function _M.check_types(types, where)
  for col, name in pairs(types) do
    ident(col, "column")
    if not converters[name] then
      error(format("squall.model: %s: type %q of column %s is not boolean, json or iso8601",
                   where, tostring(name), col), 3)
    end
  end
end

local function to_lua(m, col, v)
  local t = m.types[col]
  if t == nil or v == null then return v end
  return converters[t].from_db(v, col)
end

local function to_db(m, col, v)
  local t = m.types[col]
  if t == nil or v == null or v == nil then return v end
  return converters[t].to_db(v)
end
_M.to_db = to_db

-- ---- row objects ----------------------------------------------------------------------------

-- A row's own metatable: { __index, model, saved = { column = value as in the database } (nil
-- for a row not inserted yet), group = the rows loaded with it, rel = { name = { key, value } }
-- (nil until a relation is loaded: most rows never load one) }.
--
-- A page's metatable, shared by the rows of one query of an untyped model: { __index, model,
-- group, columns = the result's column names, values = every row's values as read, in one flat
-- array (row i's column j at (i - 1) * #columns + j), index = row -> i (made on first need) }.
-- A list route reads its rows and encodes them: one table per row, as db.query makes it, instead
-- of an object, a metatable and a saved copy each. A row gets its own metatable when something
-- needs its state: a save, a change check, a relation, a refresh by a later query.
local row_index  -- set by squall.model: methods, then relations

function _M.set_index(fn) row_index = fn end

-- Gives a row of a page its own metatable, its saved values copied from the page's.
local function detach(row, page)
  local index = page.index
  if not index then
    -- The first position of a row wins: a row that comes twice in one result (many_to_many)
    -- had its values stored at its first.
    local group = page.group
    index = tnew(0, #group)
    for i = #group, 1, -1 do index[group[i]] = i end
    page.index = index
  end
  local cols, vals = page.columns, page.values
  local n = #cols
  local base = (index[row] - 1) * n
  local saved = tnew(0, n)
  for j = 1, n do saved[cols[j]] = vals[base + j] end
  local st = { __index = row_index, model = page.model, saved = saved, group = page.group, rel = nil }
  setmetatable(row, st)
  return st
end

-- The row's own state (its metatable), made first if the row still shares its page's. Whatever
-- reads or writes `saved`, `group` or `rel` goes through here; the model alone can be read from
-- either metatable.
local function state(row)
  local st = getmetatable(row)
  if st.values then return detach(row, st) end
  return st
end
_M.state = state

-- ncols: the number of columns to come, so that the row's fields go in without its table
-- growing (and rehashing) three times on the way to six columns. The nil fields of the state
-- reserve their slots the same way (LuaJIT sizes a constructor by its keys).
function _M.new(m, values, ncols)
  local row = setmetatable(ncols and tnew(0, ncols) or {},
                           { __index = row_index, model = m, saved = nil, group = nil, rel = nil })
  if values then
    for k, v in pairs(values) do row[k] = v end
  end
  return row
end

-- The request's identity map for `m`: primary key -> row object. `size`: how many rows are about
-- to go in, so that a new map does not rehash on the way.
local function identity(m, size)
  local im = context.request_table("identity")
  -- By model, not table: two models of one table (one strict, say) give objects of their own.
  local t = im[m.name]
  if not t then
    t = tnew(0, size or 0)
    im[m.name] = t
  end
  return t
end
_M.identity = identity

-- Rows read or written inside a transaction that rolled back may not exist, or not hold what
-- their objects say: the next query of this request builds its objects afresh.
db.on_rollback(function()
  context.current().request.identity = nil
end)

-- A fresh row from the database for an object that has one already: the object is kept (one
-- row, one object) and takes the new values, except those changed in Lua and not saved yet.
local function refresh(row, st, r)
  local m = st.model
  local saved = st.saved
  for col, v in pairs(r) do
    local old = saved[col]
    if old == nil or to_db(m, col, rawget(row, col)) == old then
      local value = to_lua(m, col, v)
      row[col] = value
      saved[col] = to_db(m, col, value)
    end
  end
end

-- Sets the row's columns from a database row (of a typed model, or read again by reload), all
-- of them saved.
local function fill(row, r)
  local st = state(row)
  local m = st.model
  local saved = {}
  for col, v in pairs(r) do
    local value = to_lua(m, col, v)
    row[col] = value
    -- Compared later with to_db of the current value, so kept in that form: a JSON document
    -- re-encoded, a boolean as a boolean.
    saved[col] = to_db(m, col, value)
  end
  st.saved = saved
end
_M.fill = fill

-- Turns db.query rows into objects of `m`, in the list db.query returned (still a JSON array);
-- they remember each other as siblings, so that the first lazy load of a relation on one loads
-- it for all of them.
function _M.materialize(m, rows)
  local n = #rows
  local group = tnew(n, 0)
  local pk = m.pk
  local im = identity(m, n)
  local cols = rows.columns
  local ncols = #cols
  -- Typed columns are converted, so their values as read are not what a row compares with:
  -- each row gets its own state at once.
  local page, vals
  if not m.typed then
    vals = tnew(n * ncols, 0)
    page = { __index = row_index, model = m, group = group, columns = cols, values = vals, index = nil }
  end
  for i = 1, n do
    local r = rows[i]
    local id = r[pk]
    local row = id ~= nil and im[id]
    if row then
      -- The same row twice in one result (many_to_many) is already what it says.
      if getmetatable(row) ~= page then
        local st = state(row)
        refresh(row, st, r)
        st.group = group
      end
      rows[i] = row
    elseif page then
      -- The result's own row becomes the object: numeric loops over the column names, which
      -- LuaJIT compiles (a pairs() loop stays in the interpreter).
      local base = (i - 1) * ncols
      for j = 1, ncols do vals[base + j] = r[cols[j]] end
      setmetatable(r, page)
      if id ~= nil then im[id] = r end
    else
      row = _M.new(m, nil, ncols)
      fill(row, r)
      getmetatable(row).group = group
      if id ~= nil then im[id] = row end
      rows[i] = row
    end
    group[i] = rows[i]
  end
  return rows
end

-- The columns whose values differ from what the database holds, in a stable order (one SQL
-- text per set of columns, for the statement cache), with their values as written.
function _M.changes(row)
  local st = state(row)
  local m, saved = st.model, st.saved or {}
  local cols = {}
  for col, v in pairs(row) do
    -- A field named like a relation is a value the code put there, not a column.
    if type(col) == "string" and type(v) ~= "function" and not m.relations[col] and to_db(m, col, v) ~= saved[col] then
      cols[#cols + 1] = col
    end
  end
  -- A column read from the database and then set to nil in Lua is a change to NULL.
  for col in pairs(saved) do
    if rawget(row, col) == nil and saved[col] ~= null then cols[#cols + 1] = col end
  end
  sort(cols)
  local vals = {}
  for i = 1, #cols do
    local v = to_db(m, cols[i], rawget(row, cols[i]))
    vals[i] = v == nil and null or v
  end
  return cols, vals
end

-- After an INSERT or UPDATE: these values are what the database holds now.
function _M.mark_saved(row, cols, vals)
  local st = state(row)
  local saved = st.saved or {}
  for i = 1, #cols do saved[cols[i]] = vals[i] end
  st.saved = saved
end

function _M.forget(row)
  local st = state(row)
  local id = rawget(row, st.model.pk)
  if id ~= nil then identity(st.model)[id] = nil end
  st.saved = nil
  st.rel = nil
end

-- After a statement that changed rows without their objects (update_all, delete_all).
function _M.clear_identity(m)
  local im = context.current().request.identity
  if im then im[m.name] = nil end
end

function _M.remember(row)
  local st = getmetatable(row)
  local id = rawget(row, st.model.pk)
  if id ~= nil then identity(st.model)[id] = row end
end

return _M
