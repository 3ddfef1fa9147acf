-- The example notes API, through the real HTTP stack, each test rolled back.
local t = require "squall.test"
local db = require "squall.db"

describe("notes API", function()
  t.rollback_each()
  local client = t.client()

  local function new_user(name)
    local res = client:post("/users", { json = { name = name or "ann" } })
    assert.equal(201, res.status)
    return res:json()
  end

  it("creates a user and reads it back, a missing bio as JSON null", function()
    local u = new_user("bob")
    assert.equal("bob", u.name)
    local res = client:get("/users/" .. u.id)
    assert.equal(200, res.status)
    assert.same({ id = u.id, name = "bob", bio = db.null }, res:json())
    assert.matches('"bio":null', res.body, 1, true)
  end)

  it("answers 422 with a message per invalid field", function()
    local res = client:post("/users", { json = { name = "", bio = 5, extra = true } })
    assert.equal(422, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.same({ errors = { name = "must not be blank", bio = "must be a string", extra = "is not a known field" } },
                res:json())
  end)

  it("answers 400, not 500, to malformed JSON", function()
    local res = client:post("/users", { body = '{"name":', headers = { ["Content-Type"] = "application/json" } })
    assert.equal(400, res.status)
  end)

  it("creates, reads, updates and deletes a note", function()
    local u = new_user()
    local res = client:post("/users/" .. u.id .. "/notes", { json = { title = "first", body = "hello" } })
    assert.equal(201, res.status)
    local note = res:json()
    assert.same({ "first", "hello", u.id }, { note.title, note.body, note.user_id })
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", note.created_at)

    res = client:patch("/notes/" .. note.id, { json = { title = "renamed" } })
    assert.equal(200, res.status)
    assert.same({ "renamed", "hello" }, { res:json().title, res:json().body })

    assert.equal(204, client:delete("/notes/" .. note.id).status)
    assert.equal(404, client:get("/notes/" .. note.id).status)
    assert.equal(404, client:delete("/notes/" .. note.id).status)
  end)

  it("pages through a user's notes", function()
    local u = new_user()
    for i = 1, 5 do
      assert.equal(201, client:post("/users/" .. u.id .. "/notes", { json = { title = "n" .. i } }).status)
    end
    local page = client:get("/users/" .. u.id .. "/notes", { query = { page = 2, per_page = 2 } }):json()
    assert.equal(5, page.total)
    assert.equal(2, page.page)
    assert.same({ "n3", "n4" }, { page.notes[1].title, page.notes[2].title })
    local last = client:get("/users/" .. u.id .. "/notes", { query = { page = 3, per_page = 2 } }):json()
    assert.same({ "n5" }, { last.notes[1].title })
    assert.is_nil(last.notes[2])
  end)

  it("treats a page below 1 or not a number as the first page, a page size below 1 or NaN as 1", function()
    local u = new_user()
    for i = 1, 2 do
      assert.equal(201, client:post("/users/" .. u.id .. "/notes", { json = { title = "n" .. i } }).status)
    end
    for _, bad in ipairs({ "nan", "-inf", "0", "x" }) do
      local r = client:get("/users/" .. u.id .. "/notes", { query = { page = bad, per_page = 1 } })
      assert.equal(200, r.status, bad)
      assert.equal(1, r:json().page, bad)
      assert.same({ "n1" }, { r:json().notes[1].title }, bad)
    end
    for _, bad in ipairs({ "nan", "-inf", "0" }) do
      local p = client:get("/users/" .. u.id .. "/notes", { query = { per_page = bad } })
      assert.equal(200, p.status, bad)
      assert.equal(1, #p:json().notes, bad)
    end
    local far = client:get("/users/" .. u.id .. "/notes", { query = { page = "1e300" } })
    assert.equal(200, far.status)
    assert.is_nil(far:json().notes[1])
  end)

  it("serves a page of notes in 3 statements, however many notes it holds", function()
    local u = new_user()
    for i = 1, 6 do
      assert.equal(201, client:post("/users/" .. u.id .. "/notes", { json = { title = "n" .. i } }).status)
    end
    local page
    assert.queries(3, function()                 -- the user, the page, the total
      page = client:get("/users/" .. u.id .. "/notes", { query = { per_page = 5 } }):json()
    end)
    assert.same({ 5, 6 }, { #page.notes, page.total })
  end)

  it("imports notes all or nothing", function()
    local u = new_user()
    local res = client:post("/users/" .. u.id .. "/notes/import",
                            { json = { { title = "a" }, { title = "b" } } })
    assert.equal(201, res.status)
    assert.equal(2, res:json().imported)
    res = client:post("/users/" .. u.id .. "/notes/import", { json = { { title = "c" }, { title = 42 } } })
    assert.equal(422, res.status)
    assert.equal(2, client:get("/users/" .. u.id .. "/notes"):json().total)  -- "c" was rolled back
  end)

  it("answers 404 for notes of a user that does not exist", function()
    assert.equal(404, client:post("/users/999999/notes", { json = { title = "x" } }).status)
  end)

  it("lets the handler see rows the spec inserted in its transaction", function()
    local r = db.query("INSERT INTO users (name) VALUES (?)", "inserted-by-spec")
    local res = client:get("/users/" .. r.insert_id)
    assert.equal(200, res.status)
    assert.equal("inserted-by-spec", res:json().name)
  end)
  it("lets the configured front-end origin call it, and only under its own paths", function()
    local pre = client:options("/users", { headers = { Origin = "http://localhost:3000",
                                                       ["Access-Control-Request-Method"] = "POST",
                                                       ["Access-Control-Request-Headers"] = "content-type" } })
    assert.equal(204, pre.status)
    assert.equal("http://localhost:3000", pre.headers["access-control-allow-origin"])
    assert.equal("600", pre.headers["access-control-max-age"])
    local missing = client:get("/users/999999999", { headers = { Origin = "http://localhost:3000" } })
    assert.equal(404, missing.status)
    assert.equal("http://localhost:3000", missing.headers["access-control-allow-origin"])
    assert.is_nil(client:get("/users/999999999", { headers = { Origin = "http://evil.example" } })
                    .headers["access-control-allow-origin"])
    assert.is_nil(client:get("/hello/x", { headers = { Origin = "http://localhost:3000" } })
                    .headers["access-control-allow-origin"])
  end)
end)

describe("rollback_each", function()
  it("left no user behind from the tests above", function()
    local rows = db.query("SELECT COUNT(*) AS n FROM users WHERE name IN ('bob', 'inserted-by-spec')")
    assert.equal(0, rows[1].n)
  end)
end)
