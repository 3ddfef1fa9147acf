-- The notes JSON API: users and their notes, with pagination and validation, on squall.model.
-- validate.check keeps guarding the request bodies (unknown fields, blank names: the API's
-- 422 messages); the models read and write the rows.
local squall = require "squall"
local model = require "squall.model"
local validate = require "validate"

local tonumber, floor, min, type = tonumber, math.floor, math.min, type

local USER = { name = { required = true, type = "string", max = 100 }, bio = { type = "string", max = 2000 } }
local NOTE = { title = { required = true, type = "string", max = 200 }, body = { type = "string", max = 10000 } }

local User = model.define("users", {})
local Note = model.define("notes", {
  relations = { user = { belongs_to = User, foreign_key = "user_id" } },
})

local function find_user(id)
  return User:find(id) or squall.abort(404, "no such user")
end

local function find_note(id)
  return Note:find(id) or squall.abort(404, "no such note")
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

-- created_at and updated_at are the database's defaults (CURRENT_TIMESTAMP): the response shows
-- them as stored, so the new row is read back.
local function create_note(user_id, n)
  return Note:create({ user_id = user_id, title = n.title, body = n.body or "" }):reload()
end

return function(app)
  -- A browser front end on another origin may call the API (config.lua's settings.cors).
  local cors = squall.cors(squall.settings.cors or { origins = {} })
  app:use("/users", cors)
  app:use("/notes", cors)

  app:post("/users", function(req)
    local u = validate.check(req:json(), USER)
    return 201, User:create(u):reload()
  end)

  app:get("/users/:id", function(req)
    return find_user(req.params.id)
  end)

  app:get("/users/:id/notes", function(req)
    local user = find_user(req.params.id)
    local page, per_page = page_args(req)
    local p = Note:where({ user_id = user.id }):order_by("id"):paginate(page, per_page)
    return { notes = p.items, page = page, per_page = per_page, total = p.total }
  end)

  app:post("/users/:id/notes", function(req)
    local user = find_user(req.params.id)
    return 201, create_note(user.id, validate.check(req:json(), NOTE))
  end)

  -- All or nothing: one invalid note (or a failing insert) leaves no note behind. The notes'
  -- inserts join the transaction by themselves.
  app:post("/users/:id/notes/import", function(req)
    local user = find_user(req.params.id)
    local list = req:json()
    if type(list) ~= "table" or #list == 0 then squall.abort(422, "expected a non-empty JSON array of notes") end
    local ids = model.transaction(function()
      local ids = {}
      for i = 1, #list do
        local n = validate.check(list[i], NOTE)
        ids[i] = Note:create({ user_id = user.id, title = n.title, body = n.body or "" }).id
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
    note:update(validate.check(req:json(), NOTE, true))   -- only the fields sent, only if changed
    return note:reload()                                   -- updated_at as the database set it
  end)

  app:delete("/notes/:id", function(req)
    if Note:where({ id = req.params.id }):delete_all() == 0 then squall.abort(404, "no such note") end
    return 204
  end)
end
