-- The database e2e test application (tests/e2e/test_db_*.py run it through dbharness.py).
-- Table names come from the tests (?t=t_<name>_<pid>, checked below) because two copies of each
-- test file may run at the same time against the shared database.
local squall = require "squall"
local db = require "squall.db"

local app = squall.app()
local format, byte, char = string.format, string.byte, string.char

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return char(tonumber(x, 16)) end))
end

-- A value as Lua sees it, exactly: "n:<%.17g>", "s:<hex>", "null", "boolean:true".
local function exact(v)
  if v == db.null then return "null" end
  local t = type(v)
  if t == "number" then return "n:" .. format("%.17g", v) end
  if t == "string" then return "s:" .. hex(v) end
  return t .. ":" .. tostring(v)
end

local function err_table(e)
  if db.is_error(e) then
    return { code = e.code, sqlstate = e.sqlstate, message = e.message, kind = e.kind,
             text = tostring(e), is_error = true, unavailable = db.is_unavailable(e) }
  end
  return { text = tostring(e), is_error = false }
end

local function tbl(req)
  local t = req.query.t
  if type(t) ~= "string" or not t:match("^t_[%w_]+$") then squall.abort(400, "bad table name") end
  return t
end

local function num(req, name, default)
  local v = tonumber(req.query[name]) or default
  if v == nil then squall.abort(400, "missing " .. name) end
  return v
end

local function tag(req)
  local g = req.query.tag or "none"
  if not g:match("^[%w_]+$") then squall.abort(400, "bad tag") end
  return g
end

-- What a query returned, shaped for JSON: rows (binary columns as hex), their exact Lua values,
-- column order; or affected_rows / insert_id.
local function shape(res, hex_cols)
  if res.columns == nil then
    return { affected_rows = res.affected_rows, insert_id = res.insert_id,
             exact_insert_id = exact(res.insert_id) }
  end
  local hexset = {}
  for _, c in ipairs(hex_cols or {}) do hexset[c] = true end
  local rows, ex = {}, {}
  for i, row in ipairs(res) do
    local r, x = {}, {}
    for _, c in ipairs(res.columns) do
      local v = row[c]
      x[c] = exact(v)
      if hexset[c] and type(v) == "string" then v = hex(v) end
      r[c] = v
    end
    rows[i], ex[i] = r, x
  end
  return { n = #res, columns = res.columns, rows = rows, exact = ex }
end

-- POST /sql {"sql": ..., "params": [...], "n": count, "hex": [1-based params given as hex],
--            "nil": [params to pass as Lua nil], "hex_cols": [...], "catch": bool, "raw": bool}
app:post("/sql", function(req)
  local doc = req:json()
  local params, n = {}, doc.n or #(doc.params or {})
  for i = 1, n do params[i] = doc.params[i] end
  for _, i in ipairs(doc.hex or {}) do params[i] = unhex(params[i]) end
  for _, i in ipairs(doc["nil"] or {}) do params[i] = nil end
  if doc.raw then return db.query(doc.sql, unpack(params, 1, n)) end
  if doc.catch then
    local ok, res = pcall(db.query, doc.sql, unpack(params, 1, n))
    if not ok then return { error = err_table(res) } end
    return shape(res, doc.hex_cols)
  end
  return shape(db.query(doc.sql, unpack(params, 1, n)), doc.hex_cols)
end)

app:get("/ping", function(req) return "pong" end)

app:get("/stats", function(req) return db.stats() end)

-- ---- types ---------------------------------------------------------------------------------

-- Booleans as parameters: written as 1 and 0, and `WHERE flag = ?` matches them.
app:get("/types/booleans", function(req)
  local rows = db.query("SELECT ? AS t, ? AS f, CAST(? AS SIGNED) + 0 AS sum", true, false, true)
  return { t = exact(rows[1].t), f = exact(rows[1].f), sum = exact(rows[1].sum) }
end)

-- Every way of writing NULL: nil in the middle, nil at the end, db.null, cjson.null.
app:get("/types/null-params", function(req)
  local cjson = require "cjson"
  local rows = db.query("SELECT ? IS NULL AS a, ? IS NULL AS b, ? IS NULL AS c, ? AS d, "
                        .. "? IS NULL AS e", nil, db.null, cjson.null, 7, nil)
  local r = rows[1]
  return { a = r.a, b = r.b, c = r.c, d = r.d, e = r.e,
           null_is_cjson_null = (db.null == cjson.null) }
end)

-- A binary value built in Lua (every byte value, NUL first) goes in and comes back unchanged.
app:post("/types/binary", function(req)
  local t = tbl(req)
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = char(i) end
  local all = table.concat(bytes)
  local vb = "\0a\0b\255\0"
  local ins = db.query("INSERT INTO " .. t .. " (bl, vb) VALUES (?, ?)", all, vb)
  local rows = db.query("SELECT bl, vb, HEX(bl) AS hbl, HEX(vb) AS hvb, LENGTH(bl) AS lbl FROM "
                        .. t .. " WHERE id = ?", ins.insert_id)
  local r = rows[1]
  return { same_bl = (r.bl == all), same_vb = (r.vb == vb), len_bl = #r.bl, len_vb = #r.vb,
           sql_hex_bl = r.hbl, sql_hex_vb = r.hvb, sql_len_bl = r.lbl, lua_hex_vb = hex(r.vb) }
end)

-- A large TEXT value (more than any single buffer guess) round-trips.
app:post("/types/large", function(req)
  local t = tbl(req)
  local size = num(req, "size")
  local big = string.rep("0123456789abcdef\240\159\152\128", math.ceil(size / 20)):sub(1, size)
  local ins = db.query("INSERT INTO " .. t .. " (tx_long) VALUES (?)", big)
  local rows = db.query("SELECT tx_long, LENGTH(tx_long) AS len FROM " .. t .. " WHERE id = ?",
                        ins.insert_id)
  return { same = (rows[1].tx_long == big), len = rows[1].len, lua_len = #rows[1].tx_long }
end)

-- The same, read back twice in one row: past 16 MiB the row comes as several protocol packets.
app:post("/types/large-twice", function(req)
  local t = tbl(req)
  local size = num(req, "size")
  local big = string.rep("0123456789abcdef", math.ceil(size / 16)):sub(1, size)
  local ins = db.query("INSERT INTO " .. t .. " (tx_long) VALUES (?)", big)
  local out = {}
  for i = 1, 2 do  -- the second run of the statement is pipelined when db.pipeline allows
    local r = db.query("SELECT tx_long, tx_long AS again, LENGTH(tx_long) AS len FROM " .. t .. " WHERE id = ?",
                       ins.insert_id)[1]
    out[i] = { same = r.tx_long == big and r.again == big, len = r.len }
  end
  return out
end)

-- POST /tx/sql {"sql": ..., "params": [...]}: one statement inside a transaction (its statements
-- run one at a time on the pinned connection, through Connector/C even with db.pipeline).
app:post("/tx/sql", function(req)
  local doc = req:json()
  return db.transaction(function(tx)
    return shape(tx:query(doc.sql, unpack(doc.params or {})))
  end)
end)

-- ---- transactions --------------------------------------------------------------------------

-- POST /tx/commit?t= {"rows": [[id, balance], ...]}: one transaction inserting the rows; it
-- returns two values, which db.transaction hands back.
app:post("/tx/commit", function(req)
  local t = tbl(req)
  local doc = req:json()
  local n, last = db.transaction(function(tx)
    local count = 0
    for _, r in ipairs(doc.rows) do
      tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, ?)", r[1], r[2])
      count = count + 1
    end
    return count, "done"
  end)
  return { inserted = n, second = last }
end)

-- The transaction inserts ?id then raises a plain Lua error: uncaught, so the request is a 500.
app:post("/tx/raise", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  db.transaction(function(tx)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 1)", id)
    error("deliberate failure inside the transaction")
  end)
  return "not reached"
end)

-- The transaction inserts ?id twice (duplicate key); the handler catches what db.transaction
-- re-raises and reports it.
app:post("/tx/raise-caught", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local ok, e = pcall(db.transaction, function(tx)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 1)", id)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 2)", id)
  end)
  return { ok = ok, err = not ok and err_table(e) or nil }
end)

-- Inside one transaction a failing statement is caught with pcall and the work goes on: the
-- statement alone failed, the transaction commits the rest.
app:post("/tx/statement-error-caught", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local code = db.transaction(function(tx)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 1)", id)
    local ok, e = pcall(tx.query, tx, "INSERT INTO " .. t .. " (id, balance) VALUES (?, 2)", id)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 3)", id + 1)
    return (not ok) and e.code or 0
  end)
  return { caught_code = code }
end)

-- Nested: outer inserts id, a savepoint inserts id+1 (and fails when mode=inner_fail), the outer
-- inserts id+2 after it; mode=outer_fail makes the outer raise at the end.
app:post("/tx/nested", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local mode = req.query.mode or "ok"
  local ins = "INSERT INTO " .. t .. " (id, balance) VALUES (?, ?)"
  local report = {}
  local ok, e = pcall(db.transaction, function(tx)
    tx:query(ins, id, 1)
    local iok, ie = pcall(tx.transaction, tx, function(tx2)
      tx2:query(ins, id + 1, 2)
      if mode == "inner_fail" then error("inner failure") end
      return "inner result"
    end)
    report.inner_ok = iok
    report.inner = iok and ie or tostring(ie)
    tx:query(ins, id + 2, 3)
    if mode == "outer_fail" then error("outer failure") end
  end)
  report.ok = ok
  if not ok then report.err = tostring(e) end
  return report
end)

-- Three levels: the innermost fails, the middle one catches it, inserts more and commits.
app:post("/tx/deep", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local ins = "INSERT INTO " .. t .. " (id, balance) VALUES (?, 0)"
  db.transaction(function(tx)
    tx:query(ins, id)
    tx:transaction(function(tx2)
      tx2:query(ins, id + 1)
      local ok = pcall(tx2.transaction, tx2, function(tx3)
        tx3:query(ins, id + 2)
        error("innermost failure")
      end)
      assert(not ok)
      tx2:query(ins, id + 3)
    end)
  end)
  return { ok = true }
end)

-- Moves ?amount from ?from to ?to; 409 (and nothing moved) when the balance is too low, 404 when
-- an account is missing (after the debit, which must be rolled back).
app:post("/transfer", function(req)
  local t = tbl(req)
  local from, to, amount = num(req, "from"), num(req, "to"), num(req, "amount")
  local left = db.transaction(function(tx)
    local rows = tx:query("SELECT balance FROM " .. t .. " WHERE id = ? FOR UPDATE", from)
    if #rows == 0 then squall.abort(404, "no account " .. from) end
    if rows[1].balance < amount then squall.abort(409, "insufficient funds") end
    tx:query("UPDATE " .. t .. " SET balance = balance - ? WHERE id = ?", amount, from)
    local r = tx:query("UPDATE " .. t .. " SET balance = balance + ? WHERE id = ?", amount, to)
    if r.affected_rows ~= 1 then squall.abort(404, "no account " .. to) end
    return rows[1].balance - amount
  end)
  return { ok = true, from_balance = left }
end)

app:get("/tx/in-transaction", function(req)
  local rows = db.query("SELECT @@in_transaction AS in_tx, CONNECTION_ID() AS conn")
  return { in_tx = rows[1].in_tx, conn = rows[1].conn }
end)

-- A transaction object kept past the end of its block.
app:get("/tx/after-end", function(req)
  local saved
  db.transaction(function(tx) saved = tx end)
  if req.query.uncaught then
    saved:query("SELECT 1")
    return "not reached"
  end
  local ok, e = pcall(saved.query, saved, "SELECT 1")
  return { ok = ok, err = tostring(e) }
end)

-- ---- concurrency ---------------------------------------------------------------------------

-- Five queries, each about this request's own id.
app:get("/c/five", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local a = db.query("SELECT val FROM " .. t .. " WHERE id = ?", id)
  local b = db.query("SELECT ? AS echo", id)
  local c = db.query("SELECT CONCAT('req-', ?) AS tag", id)
  local d = db.query("SELECT id * 3 AS triple FROM " .. t .. " WHERE id = ?", id)
  local e = db.query("UPDATE " .. t .. " SET hits = hits + 1 WHERE id = ?", id)
  return { id = id, val = a[1] and a[1].val, echo = b[1].echo, tag = c[1].tag,
           triple = d[1] and d[1].triple, affected = e.affected_rows }
end)

-- SELECT SLEEP(?s) with a tag in the statement text, so a test can find it in the processlist.
app:get("/c/sleep", function(req)
  local s = num(req, "s")
  local g = tag(req)
  local rows = db.query("SELECT SLEEP(?) AS slept, '" .. g .. "' AS tag", s)
  return { slept = rows[1].slept, tag = rows[1].tag }
end)

app:get("/c/quick", function(req)
  local rows = db.query("SELECT ? + 1 AS v", num(req, "v", 1))
  return { v = rows[1].v }
end)

-- ?n fast queries queued ahead of a SLEEP(?s) on the same connection (the test uses a pool of
-- one), and a timer firing halfway through the sleep. Returns the order in which they finished.
-- same=1 gives the sleep the fast queries' statement, warmed up first, so that it looks fast.
app:get("/c/behind-slow", function(req)
  local n, s = num(req, "n", 10), num(req, "s", 2)
  local fast = "SELECT SLEEP(?) AS slept, ? AS label"
  local slow = req.query.same == "1" and fast or "SELECT SLEEP(?) AS slept, ? AS label, 'slow' AS kind"
  if slow == fast then
    for _ = 1, 3 do db.query(fast, 0, "warm-up") end
  end
  local order, tasks = {}, {}
  local function run(label, secs, sql)
    db.query(sql, secs, label)
    order[#order + 1] = label
  end
  for _ = 1, n do tasks[#tasks + 1] = squall.spawn(run, "fast", 0, fast) end
  tasks[#tasks + 1] = squall.spawn(run, "slow", s, slow)
  tasks[#tasks + 1] = squall.spawn(function()
    squall.sleep(s / 2)
    order[#order + 1] = "timer"
  end)
  for _, t in ipairs(tasks) do t:wait() end
  return { order = order }
end)

-- Two spawned tasks each sleeping ?s in the database, waited for together.
app:get("/c/spawn-two", function(req)
  local s = num(req, "s", 0.5)
  local function nap(label)
    local rows = db.query("SELECT SLEEP(?) AS slept, ? AS label", s, label)
    return rows[1].label, rows[1].slept
  end
  local a = squall.spawn(nap, "a")
  local b = squall.spawn(nap, "b")
  local la, sa = a:wait()
  local lb, sb = b:wait()
  return { labels = { la, lb }, slept = { sa, sb } }
end)

-- A spawned task whose query fails: task:wait() re-raises that error object.
app:get("/c/spawn-error", function(req)
  local task = squall.spawn(function()
    return db.query("SELECT * FROM t_no_such_table_anywhere")
  end)
  if req.query.uncaught then
    task:wait()
    return "not reached"
  end
  local ok, e = pcall(task.wait, task)
  return { ok = ok, err = err_table(e) }
end)

app:get("/c/spawn-args", function(req)
  local task = squall.spawn(function(a, b)
    local rows = db.query("SELECT ? + ? AS sum", a, b)
    return rows[1].sum, a .. "+" .. b
  end, 2, 3)
  local sum, text = task:wait()
  return { sum = sum, text = text }
end)

-- ---- the engine: connections, their sessions and their lifetimes -------------------------

-- Which connection ran the query, what its session holds (init_sql sets @squall_init and the
-- time zone in test_db_lifecycle.py), after SLEEP(?s); the tag marks it in the processlist.
app:get("/e/conn", function(req)
  local s = num(req, "s", 0)
  local g = tag(req)
  local r = db.query("SELECT CONNECTION_ID() AS id, @squall_init AS init, "
                     .. "@@session.time_zone AS tz, SLEEP(?) AS slept, '" .. g .. "' AS tag", s)[1]
  return { id = r.id, init = r.init, tz = r.tz, slept = r.slept, tag = r.tag }
end)

-- The row ?id of table ?t, the bound id echoed back, and the connection that read it, after
-- SLEEP(?s) in the same statement (so that concurrent requests hold connections at once).
app:get("/e/row", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local s = num(req, "s", 0)
  local rows = db.query("SELECT id, val, ? AS echo, CONNECTION_ID() AS conn, SLEEP(?) AS slept FROM "
                        .. t .. " WHERE id = ?", id, s, id)
  local r = rows[1]
  if not r then return 404, { error = "no row " .. id } end
  return { id = r.id, val = r.val, echo = r.echo, conn = r.conn }
end)

-- A transaction that asks for its connection, waits ?s on a timer (the connection stays pinned,
-- idle, inside the transaction) and asks again: both answers must be the same connection.
app:get("/e/tx-conn", function(req)
  local s = num(req, "s", 0.2)
  return db.transaction(function(tx)
    local a = tx:query("SELECT CONNECTION_ID() AS id, @@in_transaction AS in_tx")[1]
    squall.sleep(s)
    local b = tx:query("SELECT CONNECTION_ID() AS id, @@in_transaction AS in_tx")[1]
    return { first = a.id, second = b.id, in_tx = b.in_tx }
  end)
end)

-- ---- disconnects ---------------------------------------------------------------------------

-- A transaction that inserts ?id and then waits, in the database (how=db) or on a timer
-- (how=timer), before inserting ?id+1 and committing.
app:post("/d/tx-sleep", function(req)
  local t = tbl(req)
  local id = num(req, "id")
  local s = num(req, "s", 1)
  local how = req.query.how or "db"
  db.transaction(function(tx)
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 1)", id)
    if how == "timer" then
      squall.sleep(s)
    else
      tx:query("SELECT SLEEP(?)", s)
    end
    tx:query("INSERT INTO " .. t .. " (id, balance) VALUES (?, 2)", id + 1)
  end)
  return { ok = true }
end)

-- ---- misuse --------------------------------------------------------------------------------

-- db.query from a coroutine the handler made itself, not a request's or a spawned task's.
app:get("/m/own-coroutine", function(req)
  local f = coroutine.wrap(function() return db.query("SELECT 1 AS one") end)
  return { rows = f() }
end)

-- A table that is not an array (an array would be a list parameter).
app:get("/m/table-param", function(req)
  return db.query("SELECT ? AS v", { id = 1 })
end)

app:get("/m/function-param", function(req)
  return db.query("SELECT ? AS a, ? AS b", 1, print)
end)

app:get("/m/placeholders", function(req)
  local which = req.query.which
  local ok, e
  if which == "too-few" then
    ok, e = pcall(db.query, "SELECT ? AS a, ? AS b", 1)
  elseif which == "too-many" then
    ok, e = pcall(db.query, "SELECT ? AS a", 1, 2)
  else
    ok, e = pcall(db.query, "SELECT 1 AS a", 1)
  end
  return { ok = ok, err = not ok and err_table(e) or nil }
end)

app:get("/m/placeholders-uncaught", function(req)
  return db.query("SELECT ? AS a, ? AS b", 1)
end)

app:get("/m/non-string-sql", function(req)
  return db.query(42)
end)

app:get("/m/syntax", function(req)
  local ok, e = pcall(db.query, "SELEC 1")
  return { ok = ok, err = err_table(e) }
end)

return app
