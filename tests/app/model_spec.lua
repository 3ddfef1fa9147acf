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

describe("squall.model", function()
  setup(function()
    for _, sql in ipairs(SCHEMA) do db.query(sql) end
  end)

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
end)
