-- The notes API's list route twice, for bench/run-notes.sh: /hand/... the hand-written SQL the
-- example app had before squall.model, /model/... what scripts/notes.lua does now. Same data,
-- same process, same JSON out.
local squall = require "squall"
local db = require "squall.db"
local model = require "squall.model"

local app = squall.app()

local NOTE_COLUMNS = "id, user_id, title, body, created_at, updated_at"

local function page_of(req)
  return tonumber(req.query.page) or 1, tonumber(req.query.per_page) or 20
end

app:get("/hand/users/:id/notes", function(req)
  local user = db.query("SELECT id, name, bio FROM users WHERE id = ?", req.params.id)[1]
  if not user then squall.abort(404, "no such user") end
  local page, per_page = page_of(req)
  local notes = db.query("SELECT " .. NOTE_COLUMNS .. " FROM notes WHERE user_id = ? ORDER BY id LIMIT ? OFFSET ?",
                         user.id, per_page, (page - 1) * per_page)
  local total = db.query("SELECT COUNT(*) AS n FROM notes WHERE user_id = ?", user.id)[1].n
  return { notes = notes, page = page, per_page = per_page, total = total }
end)

local User = model.define("users", {})
local Note = model.define("notes", { relations = { user = { belongs_to = User, foreign_key = "user_id" } } })

app:get("/model/users/:id/notes", function(req)
  local user = User:find(req.params.id) or squall.abort(404, "no such user")
  local page, per_page = page_of(req)
  local p = Note:where({ user_id = user.id }):order_by("id"):paginate(page, per_page)
  return { notes = p.items, page = page, per_page = per_page, total = p.total }
end)

return app
