-- The notes JSON API: users and their notes, with pagination and validation.
local squall = require "squall"
local db = require "squall.db"
local validate = require "validate"

local tonumber, floor, min = tonumber, math.floor, math.min

local USER = { name = { required = true, type = "string", max = 100 }, bio = { type = "string", max = 2000 } }
local NOTE = { title = { required = true, type = "string", max = 200 }, body = { type = "string", max = 10000 } }
local NOTE_COLUMNS = "id, user_id, title, body, created_at, updated_at"

local function find_user(id)
  local rows = db.query("SELECT id, name, bio FROM users WHERE id = ?", id)
  return rows[1] or squall.abort(404, "no such user")
end

local function find_note(id)
  local rows = db.query("SELECT " .. NOTE_COLUMNS .. " FROM notes WHERE id = ?", id)
  return rows[1] or squall.abort(404, "no such note")
end

-- Page sizes are the deployment's choice (config.lua's settings.notes); these when it says nothing.
local PAGES = squall.settings.notes or {}
local PER_PAGE, MAX_PER_PAGE = PAGES.per_page or 20, PAGES.max_per_page or 100

local function page_args(req)
  -- tonumber takes "nan", "inf" and "1e300" too; `not (x >= 1)` also catches NaN.
  local page = floor(tonumber(req.query.page) or 1)
  local per_page = floor(tonumber(req.query.per_page) or PER_PAGE)
  if not (page >= 1) then page = 1 end
  if page > 1000000 then page = 1000000 end
  if not (per_page >= 1) then per_page = 1 end
  per_page = min(per_page, MAX_PER_PAGE)
  return page, per_page
end

local function insert_note(q, user_id, n)
  local r = q("INSERT INTO notes (user_id, title, body) VALUES (?, ?, ?)", user_id, n.title, n.body or "")
  return r.insert_id
end

return function(app)
  app:post("/users", function(req)
    local u = validate.check(req:json(), USER)
    local r = db.query("INSERT INTO users (name, bio) VALUES (?, ?)", u.name, u.bio)
    return 201, find_user(r.insert_id)
  end)

  app:get("/users/:id", function(req)
    return find_user(req.params.id)
  end)

  app:get("/users/:id/notes", function(req)
    local user = find_user(req.params.id)
    local page, per_page = page_args(req)
    local notes = db.query("SELECT " .. NOTE_COLUMNS .. " FROM notes WHERE user_id = ? ORDER BY id LIMIT ? OFFSET ?",
                           user.id, per_page, (page - 1) * per_page)
    local total = db.query("SELECT COUNT(*) AS n FROM notes WHERE user_id = ?", user.id)[1].n
    return { notes = notes, page = page, per_page = per_page, total = total }
  end)

  app:post("/users/:id/notes", function(req)
    local user = find_user(req.params.id)
    local n = validate.check(req:json(), NOTE)
    return 201, find_note(insert_note(db.query, user.id, n))
  end)

  -- All or nothing: one invalid note (or a failing insert) leaves no note behind.
  app:post("/users/:id/notes/import", function(req)
    local user = find_user(req.params.id)
    local list = req:json()
    if type(list) ~= "table" or #list == 0 then squall.abort(422, "expected a non-empty JSON array of notes") end
    local ids = db.transaction(function(tx)
      local ids = {}
      local function query(...) return tx:query(...) end
      for i = 1, #list do
        ids[i] = insert_note(query, user.id, validate.check(list[i], NOTE))
      end
      return ids
    end)
    return 201, { imported = #ids, ids = ids }
  end)

  app:get("/notes/:id", function(req)
    return find_note(req.params.id)
  end)

  app:patch("/notes/:id", function(req)
    local note = find_note(req.params.id)
    local n = validate.check(req:json(), NOTE, true)
    db.query("UPDATE notes SET title = ?, body = ? WHERE id = ?", n.title or note.title, n.body or note.body, note.id)
    return find_note(note.id)
  end)

  app:delete("/notes/:id", function(req)
    local r = db.query("DELETE FROM notes WHERE id = ?", req.params.id)
    if r.affected_rows == 0 then squall.abort(404, "no such note") end
    return 204
  end)
end
