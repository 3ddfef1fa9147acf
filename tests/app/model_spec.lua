-- squall.model against the real MariaDB: relations that load lazily and in batches, queries,
-- writes, validation, transactions, types. Each test runs in a rolled-back transaction; the
-- tables are this spec's own (m_*), created once at the start.
local t = require "squall.test"
local db = require "squall.db"
local squall = require "squall"
local model = require "squall.model"
local context = require "squall.context"

local SCHEMA = {
  "DROP TABLE IF EXISTS m_post_tags, m_tags, m_comments, m_posts, m_profiles, m_users",
  [[CREATE TABLE m_users (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      name VARCHAR(50) NOT NULL,
      email VARCHAR(100) NULL,
      active TINYINT(1) NOT NULL DEFAULT 1,
      settings TEXT NULL,
      created_at DATETIME NULL,
      updated_at DATETIME NULL,
      UNIQUE KEY m_users_email (email)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]],
  [[CREATE TABLE m_profiles (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      m_user_id INT UNSIGNED NOT NULL,
      bio TEXT NULL
    ) ENGINE=InnoDB]],
  [[CREATE TABLE m_posts (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      m_user_id INT UNSIGNED NULL,
      title VARCHAR(200) NOT NULL,
      score INT NOT NULL DEFAULT 0,
      published TINYINT(1) NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]],
  [[CREATE TABLE m_comments (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      m_post_id INT UNSIGNED NOT NULL,
      m_user_id INT UNSIGNED NOT NULL,
      body TEXT NOT NULL,
      hidden TINYINT(1) NOT NULL DEFAULT 0
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]],
  [[CREATE TABLE m_tags (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      name VARCHAR(50) NOT NULL
    ) ENGINE=InnoDB]],
  [[CREATE TABLE m_post_tags (
      m_post_id INT UNSIGNED NOT NULL,
      m_tag_id INT UNSIGNED NOT NULL,
      PRIMARY KEY (m_post_id, m_tag_id)
    ) ENGINE=InnoDB]],
}

local User = model.define("m_users", {
  timestamps = true,
  types = { active = "boolean", settings = "json", created_at = "iso8601", updated_at = "iso8601" },
  relations = {
    posts = { has_many = "m_posts", foreign_key = "m_user_id", order_by = "id" },
    profile = { has_one = "m_profiles", foreign_key = "m_user_id" },
  },
  validate = {
    name = { required = true, type = "string", max = 50 },
    email = { type = "string", pattern = "^[^@%s]+@[^@%s]+$" },
  },
})

model.define("m_profiles", {
  relations = { user = { belongs_to = "m_users", foreign_key = "m_user_id" } },
})

local Post = model.define("m_posts", {
  types = { published = "boolean" },
  relations = {
    author = { belongs_to = "m_users", foreign_key = "m_user_id" },
    comments = { has_many = "m_comments", foreign_key = "m_post_id", order_by = "id", where = { hidden = false } },
    tags = { many_to_many = "m_tags", through = "m_post_tags", foreign_key = "m_post_id",
             other_key = "m_tag_id", order_by = "name" },
  },
  validate = { title = { required = true, type = "string", max = 200 } },
})

local Comment = model.define("m_comments", {
  types = { hidden = "boolean" },
  relations = {
    post = { belongs_to = "m_posts", foreign_key = "m_post_id" },
    author = { belongs_to = "m_users", foreign_key = "m_user_id" },
  },
})

local Tag = model.define("m_tags", {})

local user = t.factory(User, function(n) return { name = "user" .. n, email = "user" .. n .. "@example.com" } end)

-- n posts by distinct authors, each with `per` comments (by one commenter) and two tags; then
-- a new request (nothing in the identity map), as when a handler reads what others wrote.
local function blog(n, per)
  local a, b = Tag:create { name = "a" }, Tag:create { name = "b" }
  local commenter = user()
  for i = 1, n do
    local u = user()
    local p = Post:create { m_user_id = u.id, title = "post " .. i, score = i, published = i % 2 == 0 }
    for j = 1, per do
      Comment:create { m_post_id = p.id, m_user_id = commenter.id, body = "c" .. j }
    end
    db.query("INSERT INTO m_post_tags (m_post_id, m_tag_id) VALUES (?, ?), (?, ?)", p.id, a.id, p.id, b.id)
  end
  context.reset()
end

-- Once per run, from whichever describe comes first (busted --shuffle may reorder them).
local created = false
local function create_tables()
  if created then return end
  for _, sql in ipairs(SCHEMA) do db.query(sql) end
  created = true
end

describe("squall.model", function()
  setup(create_tables)

  t.rollback_each()

  describe("relations", function()
    it("loads belongs_to, has_one, has_many and many_to_many on first access and caches them", function()
      local u = user { name = "ann" }
      db.query("INSERT INTO m_profiles (m_user_id, bio) VALUES (?, ?)", u.id, "hi")
      local p = Post:create { m_user_id = u.id, title = "t" }
      local tg = Tag:create { name = "x" }
      db.query("INSERT INTO m_post_tags VALUES (?, ?)", p.id, tg.id)
      Comment:create { m_post_id = p.id, m_user_id = u.id, body = "one" }
      Comment:create { m_post_id = p.id, m_user_id = u.id, body = "hidden", hidden = true }
      context.reset()  -- a new request: nothing loaded yet
      local post = Post:find(p.id)
      assert.queries(1, function() assert.equal("ann", post.author.name) end)
      assert.queries(0, function() assert.equal("ann", post.author.name) end)
      assert.queries(1, function() assert.equal("hi", post.author.profile.bio) end)
      assert.queries(1, function()
        assert.equal(1, #post.comments)        -- the hidden one is left out by the relation's where
        assert.equal("one", post.comments[1].body)
      end)
      assert.queries(1, function() assert.same({ "x" }, { post.tags[1].name }) end)
      assert.queries(0, function() assert.equal(post, post.comments[1].post) end)  -- identity map
    end)

    it("gives nil and an empty list when there is nothing, without a query for a NULL key", function()
      local p = Post:create { title = "orphan" }
      local post = Post:find(p.id)
      assert.queries(0, function() assert.is_nil(post.author) end)
      assert.queries(1, function() assert.same({}, post.comments) end)
      assert.equal("[]", require("squall.json").encode(post.comments))
      local u = User:find(user().id)
      assert.queries(1, function() assert.is_nil(u.profile) end)
    end)

    it("never serves a stale relation: a changed foreign key loads again", function()
      local a, b = user { name = "a" }, user { name = "b" }
      local p = Post:create { m_user_id = a.id, title = "t" }
      assert.equal("a", p.author.name)
      p.m_user_id = b.id
      assert.equal("b", p.author.name)
    end)

    it("batches siblings: 20 posts with authors and comment counts is 3 queries", function()
      blog(20, 2)
      assert.queries(3, function()
        local list = Post:order_by("id"):all()
        assert.equal(20, #list)
        for _, post in ipairs(list) do
          assert.is_string(post.author.name)
          assert.equal(2, #post.comments)
        end
      end)
    end)

    it("counts children for all siblings with one GROUP BY, without reading them", function()
      local CountedPost = model.define("counted_posts", { table = "m_posts", relations = {
        author = { belongs_to = User, foreign_key = "m_user_id" },
        comment_count = { count = "m_comments", foreign_key = "m_post_id", where = { hidden = false } },
      } })
      blog(20, 2)
      local first = Post:first()
      Comment:create { m_post_id = first.id, m_user_id = first.m_user_id, body = "hidden", hidden = true }
      context.reset()
      local n, sql = t.count_queries(function()
        local total = 0
        for _, post in ipairs(CountedPost:order_by("id"):all()) do
          assert.is_string(post.author.name)
          total = total + post.comment_count
        end
        assert.equal(40, total)                          -- the hidden comment is not counted
      end)
      assert.equal(3, n)
      assert.matches("GROUP BY `m_post_id`", sql[3], 1, true)
      assert.equal(0, CountedPost:new { title = "unsaved" }.comment_count)
    end)

    it("batches nested lazy loads across all the rows of the level above", function()
      blog(5, 3)
      assert.queries(4, function()
        for _, post in ipairs(Post:all()) do
          for _, c in ipairs(post.comments) do
            assert.equal(post, c.post)          -- from the identity map: no query
            assert.is_string(c.author.name)     -- one query for all 15 comments
          end
          assert.equal(2, #post.tags)
        end
      end)
    end)

    it("preloads nested shapes with one query per relation and level", function()
      blog(4, 2)
      local list
      -- posts, their authors, the authors' profiles, comments, the comments' authors, tags
      assert.queries(6, function()
        list = Post:where { score = { gte = 1 } }:preload { author = "profile", comments = { author = true }, "tags" }:all()
      end)
      assert.queries(0, function()
        for _, post in ipairs(list) do
          local _ = post.author.profile, post.tags[1].name
          for _, c in ipairs(post.comments) do local _ = c.author.name end
        end
      end)
    end)

    it("strict mode per request raises on a lazy load and names preload", function()
      blog(1, 1)
      model.strict(true)
      local post = Post:first()
      local ok, err = pcall(function() return post.author end)
      assert.is_false(ok)
      assert.matches("m_posts.author is not loaded and this request is strict: preload it", err, 1, true)
      model.strict(false)
      assert.is_string(post.author.name)
    end)

    it("strict mode per model raises on a lazy load, and a preloaded relation passes", function()
      blog(2, 1)
      local SPost = model.define("strict_posts", {
        table = "m_posts",
        strict = true,
        relations = { author = { belongs_to = "m_users", foreign_key = "m_user_id" } },
      })
      local list = SPost:all()
      assert.has_error(function() return list[1].author end)
      SPost:preload(list, "author")
      assert.is_string(list[1].author.name)
    end)

    it("resolves a belongs_to inside a comparator when the request already has the rows", function()
      blog(2, 2)
      local posts = Post:all()
      local comments = {}
      for _, p in ipairs(posts) do
        for _, c in ipairs(p.comments) do comments[#comments + 1] = c end
      end
      assert.queries(0, function()
        table.sort(comments, function(x, y) return x.post.score > y.post.score end)
      end)
      assert.equal(2, comments[1].post.score)
    end)

    it("shares the identity map with squall.spawn tasks of the same request", function()
      local u = user()
      local from_task = squall.spawn(function() return User:find(u.id) end):wait()
      assert.equal(u, from_task)
    end)

    it("explains a lazy load inside a string.gsub callback the same way", function()
      blog(1, 0)
      local post = Post:first()
      local ok, err = pcall(string.gsub, "x", "x", function() return post.author.name end)
      assert.is_false(ok)
      assert.matches("inside a C function", err, 1, true)
    end)

    it("finds a belongs_to row by a foreign key set as a string (a route parameter)", function()
      local u = user { name = "dee" }
      local p = Post:new { title = "t" }
      p.m_user_id = tostring(u.id)
      assert.equal("dee", p.author.name)
      p:save()
      assert.equal(u.id, db.query("SELECT m_user_id FROM m_posts WHERE id = ?", p.id)[1].m_user_id)
    end)

    it("takes a model as a relation's target, and reports lazy loads that ran row by row", function()
      local Owned = model.define("owned_posts", { table = "m_posts",
        relations = { writer = { belongs_to = User, foreign_key = "m_user_id" } } })
      blog(3, 0)
      for _, p in ipairs(Post:all()) do
        assert.is_string(Owned:find(p.id).writer.name)    -- find in a loop: one row per lazy load
      end
      assert.same({ ["owned_posts.writer"] = 3 }, model.report())
    end)

    it("does not write a field named like a relation", function()
      local u = user()
      local p = Post:create { m_user_id = u.id, title = "t" }
      p.comments = { "not a column" }
      assert.queries(0, function() assert.is_false(p:save()) end)
    end)

    it("explains a lazy load inside a table.sort comparator and points to preload", function()
      blog(3, 1)
      local list = Post:all()
      local ok, err = pcall(table.sort, list, function(x, y) return x.author.name < y.author.name end)
      assert.is_false(ok)
      assert.matches("cannot load here: this runs inside a C function", err, 1, true)
      assert.matches("preload(rows, \"author\")", err, 1, true)
      Post:preload(list, "author")
      table.sort(list, function(x, y) return x.author.name > y.author.name end)
      assert.is_true(list[1].author.name > list[2].author.name and list[2].author.name > list[3].author.name)
    end)
  end)

  describe("queries", function()
    it("filters by equality, lists, NULL and comparisons, all bound as parameters", function()
      blog(6, 0)
      local n, sql = t.count_queries(function()
        assert.equal(2, Post:where { score = { 2, 4 } }:count())
        assert.equal(6, Post:where { m_user_id = { null = false } }:count())
        assert.equal(0, Post:where { m_user_id = db.null }:count())
        assert.equal(3, Post:where { score = { gt = 1, lte = 4 } }:count())
        assert.equal(3, Post:where { published = true }:count())       -- a boolean column
        assert.equal(5, Post:where { score = { ne = 3 } }:count())
        assert.equal(4, Post:where { score = { not_in = { 1, 2 } } }:count())
        assert.equal(1, Post:where { title = { like = "post 6%" } }:count())
        assert.equal(2, Post:where("score > ? OR title = ?", 5, "post 1"):count())
        assert.equal(0, Post:where { score = {} }:count())                -- an empty list matches nothing
      end)
      assert.equal(10, n)
      for _, q in ipairs(sql) do assert.not_matches("post %d", q) end  -- no value in the SQL text
    end)

    it("keeps injection attempts in where as data", function()
      blog(2, 0)
      assert.equal(0, Post:where { title = "x' OR '1'='1" }:count())
      assert.equal(0, Post:where { title = { "1) OR (1=1", "' OR 1=1 -- " } }:count())
      assert.equal(0, Post:where { score = { like = "%' OR '1'='1" } }:count())
      assert.has_error(function() Post:where { ["title` = title OR `1"] = 1 } end)
      assert.has_error(function() Post:order_by("id; DROP TABLE m_posts") end)
      assert.has_error(function() Post:order_by("(SELECT 1)") end)
      assert.equal(2, Post:count())
    end)

    it("orders, limits and offsets; first, find and exists", function()
      blog(5, 0)
      local list = Post:order_by("score desc"):limit(2):offset(1):all()
      assert.same({ 4, 3 }, { list[1].score, list[2].score })
      assert.equal(1, Post:first().score)                                 -- by primary key
      assert.equal(5, Post:order_by("score", "desc"):first().score)
      assert.equal(2, #Post:offset(3):all())
      local p = Post:first()
      assert.equal(p, Post:find(p.id))                                    -- one object per row
      assert.is_nil(Post:find(0))
      assert.equal(p, Post:find(tostring(p.id)))                          -- a route parameter
      assert.has_error(function() Post:find { p.id } end,
                       "squall.model: find takes one primary key value; where{} takes lists")
      assert.is_true(Post:where { score = 5 }:exists())
      assert.is_false(Post:where { score = 6 }:exists())
      local base = Post:where { published = true }
      assert.equal(2, base:count())
      assert.equal(1, base:where { score = 2 }:count())                   -- refining copies
      assert.equal(2, base:count())
    end)

    it("paginates: items, total and pages, empty, last page and out of range", function()
      assert.same({ total = 0, pages = 0, page = 1, per_page = 2, n = 0 }, (function()
        local pg = Post:paginate(1, 2)
        return { total = pg.total, pages = pg.pages, page = pg.page, per_page = pg.per_page, n = #pg.items }
      end)())
      blog(5, 0)
      local pg
      assert.queries(2, function() pg = Post:paginate(1, 2) end)          -- a full page: COUNT too
      assert.same({ 2, 5, 3 }, { #pg.items, pg.total, pg.pages })
      assert.queries(1, function() pg = Post:paginate(3, 2) end)          -- the last page tells the total
      assert.same({ 1, 5, 3, 5 }, { #pg.items, pg.total, pg.pages, pg.items[1].score })
      pg = Post:paginate(9, 2)
      assert.same({ 0, 5, 3, 9 }, { #pg.items, pg.total, pg.pages, pg.page })
      assert.equal("[]", require("squall.json").encode(pg.items))
      pg = Post:paginate("junk", 2)
      assert.same({ 1, 1 }, { pg.page, pg.items[1].score })
      assert.equal(1, Post:paginate(-3, 2).page)
      pg = Post:where { score = { gte = 2 } }:order_by("score desc"):paginate(2, 3)
      assert.same({ 1, 4, 2 }, { #pg.items, pg.total, pg.pages })
      assert.has_error(function() Post:paginate(1, 0) end)
    end)
  end)

  describe("writes", function()
    it("creates with timestamps in UTC, and updates only the changed columns", function()
      local u = User:create { name = "ann", settings = { theme = "dark" } }
      assert.is_number(u.id)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", u.created_at)
      local utc = db.query("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i') AS t")[1].t
      assert.equal(utc, u.created_at:sub(1, 16))
      local row = db.query("SELECT created_at, active FROM m_users WHERE id = ?", u.id)[1]
      assert.equal(u.created_at, row.created_at:gsub(" ", "T") .. "Z")
      local _, sql = t.count_queries(function()
        u.name = "bea"
        assert.is_true(u:save())
      end)
      assert.matches("^UPDATE `m_users` SET `name` = %?, `updated_at` = %? WHERE `id` = %?$", sql[1])
      assert.queries(0, function() assert.is_false(u:save()) end)       -- nothing changed
      u.settings.theme = "light"                                          -- a JSON table edited in place
      _, sql = t.count_queries(function() u:save() end)
      assert.matches("SET `settings` = ?", sql[1], 1, true)
      assert.same({ theme = "light" }, User:find(u.id).settings)
      u:update { email = "bea@example.com" }
      assert.equal("bea@example.com", db.query("SELECT email FROM m_users WHERE id = ?", u.id)[1].email)
    end)

    it("deletes, and a deleted row is gone from the identity map", function()
      local u = user()
      u:delete()
      assert.is_nil(User:find(u.id))
      assert.has_error(function() u:delete() end)
      blog(3, 0)
      assert.equal(2, Post:where { score = { lte = 2 } }:delete_all())
      assert.equal(1, Post:count())
      assert.equal(1, Post:where { score = 3 }:update_all { title = "renamed" })
      assert.equal("renamed", Post:first().title)
    end)

    it("raises a 422 with messages per field, and a handler's uncaught one is sent as is", function()
      local ok, err = pcall(User.create, User, { name = "", email = "not an email" })
      assert.is_false(ok)
      assert.is_true(model.is_invalid(err))
      assert.equal(422, err.status)
      assert.same({ name = { "is required" }, email = { "has an invalid format" } }, err.errors)
      assert.matches('HTTP 422: {"errors":', tostring(err), 1, true)     -- readable in a log or a spec
      local u = user()
      u.name = string.rep("x", 51)
      assert.same({ name = { "must be at most 50 characters" } }, User:errors(u))
      u.name = nil                                                        -- would write NULL
      assert.same({ name = { "is required" } }, User:errors(u))
      u.name = string.rep("x", 51)
      assert.has_error(function() u:save() end)
      local app = squall.app()
      app:post("/users", function(req) return 201, User:create(req:json()) end)
      local res = t.dispatch(app, "POST", "/users", { json = { email = "a@b" } })
      assert.equal(422, res.status)
      assert.same({ errors = { name = { "is required" } } }, res:json())
      res = t.dispatch(app, "POST", "/users", { json = { name = "cy" } })
      assert.equal(201, res.status)
      assert.equal("cy", res:json().name)
    end)

    it("raises a duplicate key error naming the unique key and its columns, not the value", function()
      user { email = "dup@example.com" }
      local ok, err = pcall(User.create, User, { name = "x", email = "dup@example.com" })
      assert.is_false(ok)
      assert.is_true(model.is_duplicate(err))
      assert.equal("m_users_email", err.key)
      assert.same({ "email" }, err.columns)
      assert.same({ email = { "is already taken" } }, err.errors)
      assert.equal(422, err.status)
      assert.not_matches("dup@example.com", err.detail, 1, true)
    end)
  end)

  describe("transactions and identity", function()
    it("rolls model writes back with the transaction, and forgets the rolled-back objects", function()
      local ok = pcall(db.transaction, function()
        User:create { name = "gone" }
        assert.equal(1, User:where { name = "gone" }:count())
        error("undo")
      end)
      assert.is_false(ok)
      assert.equal(0, User:where { name = "gone" }:count())
      local u = user { name = "kept" }
      pcall(db.transaction, function()
        local same = User:find(u.id)
        assert.equal(u, same)
        same.name = "changed"
        same:save()
        error("undo")
      end)
      local fresh = User:find(u.id)
      assert.are_not.equal(u, fresh)                                      -- the map was dropped
      assert.equal("kept", fresh.name)
    end)

    it("gives one object per row within a request, refreshed but keeping unsaved changes", function()
      local u = user { name = "one" }
      local a = User:find(u.id)
      assert.equal(u, a)
      db.query("UPDATE m_users SET name = 'two', email = 'e@x' WHERE id = ?", u.id)
      u.email = "mine@x"
      local b = User:where { id = u.id }:first()
      assert.equal(u, b)
      assert.equal("two", b.name)                                          -- refreshed
      assert.equal("mine@x", b.email)                                      -- not overwritten
      assert.same({ "email" }, b:changed())
    end)
  end)

  -- A model without types keeps db.query's own row tables as its objects, the rows of one query
  -- sharing one metatable until one needs a state of its own; these check that nothing of what a
  -- row is shows the difference.
  describe("rows of a model without types", function()
    local Profile = model.define("m_profiles_untyped", {
      table = "m_profiles",
      relations = { user = { belongs_to = "m_users", foreign_key = "m_user_id" } },
    })

    local function profiles(n)
      local ids = {}
      for i = 1, n do
        ids[i] = db.query("INSERT INTO m_profiles (m_user_id, bio) VALUES (?, ?)", user().id, "bio " .. i).insert_id
      end
      context.reset()
      return ids
    end

    it("encodes a list to the same JSON as db.query's rows, an empty one as []", function()
      profiles(3)
      local json = require "squall.json"
      assert.equal(json.encode(db.query("SELECT * FROM m_profiles ORDER BY id")),
                   json.encode(Profile:order_by("id"):all()))
      assert.equal("[]", json.encode(Profile:where { bio = "none" }:all()))
    end)

    it("saves only the column changed on one row of a list, its siblings unchanged", function()
      profiles(3)
      local list = Profile:order_by("id"):all()
      list[2].bio = "edited"
      assert.same({}, list[1]:changed())
      assert.same({ "bio" }, list[2]:changed())
      local _, sql = t.count_queries(function() assert.is_true(list[2]:save()) end)
      assert.matches("^UPDATE `m_profiles` SET `bio` = %? WHERE `id` = %?$", sql[1])
      assert.is_false(list[3]:save())
      local rows = db.query("SELECT bio FROM m_profiles ORDER BY id")
      assert.same({ "bio 1", "edited", "bio 3" }, { rows[1].bio, rows[2].bio, rows[3].bio })
    end)

    it("refreshes a row of an earlier list in place, keeping its unsaved change", function()
      local ids = profiles(2)
      local list = Profile:order_by("id"):all()
      list[2].bio = "mine"
      local other = user()
      db.query("UPDATE m_profiles SET m_user_id = ?, bio = 'theirs' WHERE id = ?", other.id, ids[2])
      local again = Profile:find(ids[2])
      assert.equal(list[2], again)
      assert.equal(other.id, again.m_user_id)                              -- refreshed
      assert.equal("mine", again.bio)                                      -- not overwritten
      assert.same({ "bio" }, again:changed())
      assert.same({}, list[1]:changed())
    end)

    it("loads a relation for every row of the list at once, and deletes one row of it", function()
      local ids = profiles(3)
      local list = Profile:order_by("id"):all()
      assert.queries(1, function()
        for _, p in ipairs(list) do assert.is_string(p.user.name) end
      end)
      list[1]:delete()
      assert.is_nil(Profile:find(ids[1]))
      assert.same({}, list[3]:changed())
    end)

    it("gives a row that comes twice in one result one object, which saves as one row", function()
      blog(2, 0)
      local posts = Post:order_by("id"):all()
      local tag = posts[1].tags[1]
      assert.equal(tag, posts[2].tags[1])                                  -- tag "a" of both posts
      assert.same({}, tag:changed())
      tag.name = "renamed"
      local _, sql = t.count_queries(function() assert.is_true(tag:save()) end)
      assert.matches("^UPDATE `m_tags` SET `name` = %? WHERE `id` = %?$", sql[1])
      assert.equal("renamed", db.query("SELECT name FROM m_tags WHERE id = ?", tag.id)[1].name)
    end)
  end)

  describe("types", function()
    it("reads booleans, JSON and ISO-8601 datetimes as declared, and writes them back", function()
      local id = db.query("INSERT INTO m_users (name, active, settings, created_at) VALUES ('t', 0, ?, ?)",
                          '{"a":[1,2]}', "2024-05-01 12:30:00").insert_id
      local u = User:find(id)
      assert.is_false(u.active)
      assert.same({ a = { 1, 2 } }, u.settings)
      assert.equal("2024-05-01T12:30:00Z", u.created_at)
      assert.equal(db.null, u.updated_at)
      u.active = true
      u.created_at = "2024-06-01T00:00:00Z"
      u:save()
      local row = db.query("SELECT active, created_at FROM m_users WHERE id = ?", id)[1]
      assert.same({ 1, "2024-06-01 00:00:00" }, { row.active, row.created_at })
      assert.equal(1, User:where { active = true, id = id }:count())
    end)
  end)
end)

-- Outside the shared test transaction, so that a model query that did not join db.transaction
-- would run on another connection and not see the uncommitted row. Every test rolls back.
describe("squall.model in db.transaction", function()
  setup(create_tables)
  before_each(function() context.reset() end)

  it("joins the transaction without a tx argument, also from a spawned task; the pool does not see it", function()
    local seen = {}
    local ok, err = pcall(db.transaction, function()
      User:create { name = "in tx only" }
      seen.model = User:where { name = "in tx only" }:count()
      seen.pool = db.query("SELECT COUNT(*) AS n FROM m_users WHERE name = 'in tx only'")[1].n
      seen.task = squall.spawn(function() return User:where { name = "in tx only" }:count() end):wait()
      error("roll back")
    end)
    assert.is_false(ok)
    assert.matches("roll back", tostring(err))
    assert.same({ model = 1, pool = 0, task = 1 }, seen)
    assert.equal(0, User:where { name = "in tx only" }:count())
  end)

  it("joins a nested transaction (savepoint) and keeps the outer one's rows when it rolls back", function()
    local seen = {}
    pcall(db.transaction, function(tx)
      User:create { name = "outer" }
      pcall(tx.transaction, tx, function()
        User:create { name = "inner" }
        error("undo the inner one")
      end)
      seen.outer = User:where { name = "outer" }:count()
      seen.inner = User:where { name = "inner" }:count()
      error("roll back")
    end)
    assert.same({ outer = 1, inner = 0 }, seen)
    assert.equal(0, User:where { name = { "outer", "inner" } }:count())
  end)

  it("forgets the transaction's objects when its COMMIT fails, as after a rollback", function()
    local created
    local ok, err = pcall(db.transaction, function(tx)
      created = User:create { name = "never committed" }
      -- The transaction's connection dies between the last statement and COMMIT: the server
      -- rolls the transaction back, and COMMIT fails.
      db.query("KILL CONNECTION ?", tx:query("SELECT CONNECTION_ID() AS id")[1].id)
    end)
    assert.is_false(ok)
    assert.is_true(db.is_error(err))
    -- The object is not served from the identity map: the author is looked up, and is not there.
    local post = Post:new { m_user_id = created.id, title = "orphan" }
    assert.queries(1, function() assert.is_nil(post.author) end)
    assert.equal(0, User:where { name = "never committed" }:count())
  end)

  it("uses the pool again once the transaction has ended", function()
    db.transaction(function() end)
    assert.is_nil(db.current_transaction())
    assert.equal(0, User:where { name = "nobody" }:count())
  end)
end)
