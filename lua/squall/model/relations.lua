-- squall.model's relations: belongs_to, has_one, has_many and many_to_many, loaded on first
-- access for every sibling at once (one IN query), or ahead of time with preload.
--
-- A row's loaded relation is cached in its metatable as { key, value }, where key is the value
-- of the column the relation hangs on (the foreign key for belongs_to, the primary key
-- otherwise) when it was loaded: if that column changes, the cache no longer counts and the
-- next access loads again, so a relation is never stale with respect to its own row.

local db = require "squall.db"
local core = require "squall.core"
local context = require "squall.context"
local json = require "squall.json"
local rows = require "squall.model.rows"
local query = require "squall.model.query"

local type, pairs, ipairs, error, tostring, tonumber, rawget, getmetatable =
  type, pairs, ipairs, error, tostring, tonumber, rawget, getmetatable
local isyieldable, unpack = coroutine.isyieldable, unpack
local format = string.format

local ident, null = rows.ident, db.null

local _M = {}

local function singular(name)
  if name:match("ies$") then return (name:gsub("ies$", "y")) end
  if name:match("[sx]es$") then return (name:gsub("es$", "")) end
  return (name:gsub("s$", ""))
end

local KINDS = { "belongs_to", "has_one", "has_many", "many_to_many", "count" }

-- Checks a relation as model.define got it and fills in its defaults:
--   author   = { belongs_to = "users", foreign_key = "author_id" }      (default: author_id)
--   profile  = { has_one = "profiles", foreign_key = "user_id" }         (default: <singular>_id)
--   comments = { has_many = "comments", order_by = "id", where = { hidden = false } }
--   tags     = { many_to_many = "tags", through = "post_tags", foreign_key = "post_id",
--                other_key = "tag_id" }
--   replies  = { count = "comments", where = { hidden = false } }     (a number, rows not loaded)
function _M.normalize(m, name, spec)
  local where = "model " .. m.name .. ", relation " .. tostring(name)
  if type(spec) ~= "table" then error("squall.model: " .. where .. ": expected a table", 3) end
  local rel = { name = name }
  for _, kind in ipairs(KINDS) do
    if spec[kind] ~= nil then
      if rel.kind then error("squall.model: " .. where .. ": one of belongs_to, has_one, has_many, many_to_many, count", 3) end
      rel.kind, rel.target = kind, spec[kind]
    end
  end
  if not rel.kind then
    error("squall.model: " .. where .. ": say which kind: belongs_to, has_one, has_many, many_to_many or count", 3)
  end
  -- The target is a model, or a model's name for one defined later (resolved on first load).
  if type(rel.target) == "table" then
    rel.model, rel.target = rel.target, rel.target.name
  end
  if type(rel.target) ~= "string" then error("squall.model: " .. where .. ": the target must be a model or its name", 3) end
  if rel.kind == "belongs_to" then
    rel.foreign_key = spec.foreign_key or name .. "_id"
    rel.owner_col = rel.foreign_key
    if spec.where or spec.order_by then
      error("squall.model: " .. where .. ": belongs_to loads one row by its key; where and order_by do not apply", 3)
    end
  else
    rel.foreign_key = spec.foreign_key or singular(m.table) .. "_id"
    rel.owner_col = m.pk
  end
  ident(rel.foreign_key, "column")
  if rel.kind == "many_to_many" then
    rel.through = spec.through
    ident(rel.through, "table")
    rel.other_key = spec.other_key or singular(rel.model and rel.model.table or rel.target) .. "_id"
    ident(rel.other_key, "column")
  end
  if rel.kind == "count" and spec.order_by then
    error("squall.model: " .. where .. ": a count has no order", 3)
  end
  rel.where = spec.where
  rel.order_by = spec.order_by
  if rel.order_by then query.order_sql(rel.order_by) end  -- a bad one fails at define time
  return rel
end

local function target(rel)
  local t = rel.model or rows.registry[rel.target]
  if not t then
    error(format("squall.model: relation %s needs a model named %s: define it with model.define(%q, ...)",
                 rel.name, rel.target, rel.target), 0)
  end
  return t
end

local function usable(k)
  return k ~= nil and k ~= null
end

-- A key as the database returns it: a foreign key set from a route parameter ("5") must find
-- the row whose id came back as 5. Integers past 2^53 come back as strings and stay strings.
local function norm(k)
  if type(k) == "string" then
    local n = tonumber(k)
    if n and tostring(n) == k then return n end
  end
  return k
end

local function key_of(row, col)
  return norm(rawget(row, col))
end

local function cached(row, st, name, rel)
  local loaded = st.rel
  local c = loaded and loaded[name]
  return c ~= nil and c.key == key_of(row, rel.owner_col)
end

-- The distinct usable values of `col` in list, skipping those `skip` already has.
local function keys_of(list, col, skip)
  local keys, seen = {}, {}
  for i = 1, #list do
    local k = key_of(list[i], col)
    if usable(k) and not seen[k] and not (skip and skip[k]) then
      seen[k] = true
      keys[#keys + 1] = k
    end
  end
  return keys
end

local function set(row, name, key, value)
  local st = rows.state(row)
  local loaded = st.rel
  if not loaded then
    loaded = {}
    st.rel = loaded
  end
  loaded[name] = { key = key, value = value }
end

local loaders = {}

function loaders.belongs_to(name, rel, list)
  local t = target(rel)
  local fk = rel.foreign_key
  -- Rows this request already has are not read again (an identity map hit is free): a
  -- comment's post, after the post's comments were loaded, costs nothing.
  local im = rows.identity(t)
  local keys = keys_of(list, fk, im)
  if #keys > 0 then query.new(t):where { [t.pk] = keys }:all() end
  for i = 1, #list do
    local k = key_of(list[i], fk)
    set(list[i], name, k, usable(k) and im[k] or nil)
  end
end

local function owned(rel, list, found, owner_of)
  local by = {}
  for i = 1, #found do
    local k = owner_of(i)
    local l = by[k]
    if not l then
      l = json.array({})
      by[k] = l
    end
    l[#l + 1] = found[i]
  end
  for i = 1, #list do
    local k = key_of(list[i], rel.owner_col)
    local l = usable(k) and by[k] or json.array({})
    if rel.kind == "has_one" then
      set(list[i], rel.name, k, l[1])
    else
      set(list[i], rel.name, k, l)
    end
  end
end

local function children(_, rel, list)
  local t = target(rel)
  local keys = keys_of(list, rel.owner_col)
  if #keys == 0 then return owned(rel, list, {}, nil) end
  local q = query.new(t):where { [rel.foreign_key] = keys }
  if rel.where then q = q:where(rel.where) end
  q = q:order_by(rel.order_by or t.pk)
  local found = q:all()
  local fk = rel.foreign_key
  owned(rel, list, found, function(i) return key_of(found[i], fk) end)
end

loaders.has_one = children
loaders.has_many = children

-- The join table's key comes back as an extra column under this name, taken off before the
-- row becomes an object.
local OWNER = "_squall_owner"

function loaders.many_to_many(name, rel, list)
  local t = target(rel)
  local keys = keys_of(list, rel.owner_col)
  if #keys == 0 then return owned(rel, list, {}, nil) end
  local params = { keys }
  local sql = "SELECT t.*, j." .. ident(rel.foreign_key) .. " AS " .. OWNER .. " FROM " .. ident(t.table) ..
              " t JOIN " .. ident(rel.through) .. " j ON j." .. ident(rel.other_key) .. " = t." .. ident(t.pk) ..
              " WHERE j." .. ident(rel.foreign_key) .. " IN (?)"
  if rel.where then
    local w = query.where_sql(t, rel.where, params, "t.")
    if w ~= "" then sql = sql .. " AND " .. w end
  end
  sql = sql .. " ORDER BY " .. query.order_sql(rel.order_by or t.pk, nil, "t.")
  local res = rows.run(sql, unpack(params, 1, #params))
  local owners = {}
  for i = 1, #res do
    owners[i] = norm(res[i][OWNER])
    res[i][OWNER] = nil
  end
  local found = rows.materialize(t, res)
  owned(rel, list, found, function(i) return owners[i] end)
end

-- How many target rows point at each row, without reading them: one GROUP BY for the list.
function loaders.count(name, rel, list)
  local t = target(rel)
  local keys = keys_of(list, rel.owner_col)
  local counts = {}
  if #keys > 0 then
    local fk = ident(rel.foreign_key, "column")
    local params = { keys }
    local sql = "SELECT " .. fk .. " AS k, COUNT(*) AS n FROM " .. ident(t.table) .. " WHERE " .. fk .. " IN (?)"
    if rel.where then
      local w = query.where_sql(t, rel.where, params)
      if w ~= "" then sql = sql .. " AND " .. w end
    end
    local res = rows.run(sql .. " GROUP BY " .. fk, unpack(params, 1, #params))
    for i = 1, #res do counts[norm(res[i].k)] = res[i].n end
  end
  for i = 1, #list do
    local k = key_of(list[i], rel.owner_col)
    set(list[i], name, k, usable(k) and counts[k] or 0)
  end
end

-- Loads relation `name` into every row of list (rows of one model that lack it).
local function load(name, rel, list)
  loaders[rel.kind](name, rel, list)
end

local function strict_for(m)
  return m.strict or context.current().request.strict
end

-- Lazy loads that ran a query for one row, per relation, in this request: rows fetched one by one
-- (find in a loop) defeat batching. model.report() returns the counts; in debug mode the
-- second one of a relation is also logged, once per request.
local function note_single(m, name)
  local counts = context.request_table("single_loads")
  local key = m.name .. "." .. name
  local n = (counts[key] or 0) + 1
  counts[key] = n
  if n == 2 and core.debug then
    core.log("warn", format("squall.model: %s loaded lazily for one row at a time, twice in this request " ..
                            "(N+1 queries); load the rows in one query or preload %q", key, name))
  end
end

-- Whether loading rel for list would run a query: a belongs_to whose rows the request already
-- has (or whose keys are NULL) needs none, and so may load where a query could not wait.
local function needs_query(rel, list)
  if rel.kind ~= "belongs_to" then return true end
  return #keys_of(list, rel.foreign_key, rows.identity(target(rel))) > 0
end

-- The row's __index for a relation: its cached value, or a lazy load for the row and all its
-- siblings that lack it. `st` is the row's metatable, its own or its page's (which has no rel).
function _M.get(row, st, name, rel)
  if cached(row, st, name, rel) then return st.rel[name].value end
  local m = st.model
  if strict_for(m) then
    error(format("squall.model: %s.%s is not loaded and %s is strict: preload it (%s:preload(rows, %q), " ..
                 "or query:preload(%q))", m.name, name, m.strict and ("model " .. m.name) or "this request",
                 m.name, name, name), 3)
  end
  -- A row is always in its own group (materialize); one made by new/create has none.
  local list = { row }
  local group = st.group
  if group then
    list = {}
    for i = 1, #group do
      local r = group[i]
      local s = getmetatable(r)
      if s.model == m and not cached(r, s, name, rel) then list[#list + 1] = r end
    end
  end
  local querying = needs_query(rel, list)
  if querying and not isyieldable() then
    error(format("squall.model: %s.%s is not loaded and cannot load here: this runs inside a C function " ..
                 "(a table.sort comparator, a string.gsub callback, ...), where a query cannot wait. " ..
                 "Load it before: %s:preload(rows, %q)", m.name, name, m.name, name), 3)
  end
  if querying and #list == 1 then note_single(m, name) end
  load(name, rel, list)
  return getmetatable(row).rel[name].value  -- the row's own state now, made by set
end

function _M.report()
  local counts = context.current().request.single_loads
  local out = {}
  for k, n in pairs(counts or {}) do out[k] = n end
  return out
end

-- spec: "author" | { "author", "comments" } | { author = "profile", comments = { author = true } }
local function spec_table(spec)
  if type(spec) == "string" then return { [spec] = true } end
  if type(spec) ~= "table" then error("squall.model: preload takes a relation name or a table of them", 4) end
  local out = {}
  for k, v in pairs(spec) do
    if type(k) == "number" then out[v] = true else out[k] = v end
  end
  return out
end

-- Loads the relations `spec` names for every row of list, nested ones for all their rows at
-- once: one query per relation and level, whatever the number of rows.
function _M.preload(list, spec)
  if #list == 0 then return list end
  local m = getmetatable(list[1]).model
  for name, nested in pairs(spec_table(spec)) do
    local rel = m.relations[name]
    if not rel then
      error(format("squall.model: model %s has no relation %q", m.name, tostring(name)), 3)
    end
    local need = {}
    for i = 1, #list do
      local r = list[i]
      if not cached(r, getmetatable(r), name, rel) then need[#need + 1] = r end
    end
    if #need > 0 then load(name, rel, need) end
    if nested ~= true and nested ~= false then
      if rel.kind == "count" then
        error(format("squall.model: %s.%s is a count: nothing to preload inside it", m.name, name), 3)
      end
      local kids, seen = {}, {}
      for i = 1, #list do
        local v = getmetatable(list[i]).rel[name].value
        if v ~= nil then
          if rel.kind == "has_many" or rel.kind == "many_to_many" then
            for j = 1, #v do
              if not seen[v[j]] then seen[v[j]] = true; kids[#kids + 1] = v[j] end
            end
          elseif not seen[v] then
            seen[v] = true
            kids[#kids + 1] = v
          end
        end
      end
      _M.preload(kids, nested)
    end
  end
  return list
end

return _M
