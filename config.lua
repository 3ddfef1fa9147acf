-- The example application's configuration. Every key is documented in README.md.
-- The database settings point at the private server that tools/db.sh runs (var/mariadb).
return {
  listen = "127.0.0.1:8080",
  workers = 2,                 -- default: the number of CPUs; db below was measured with 2
                               -- (without it, keep db.pool_size >= the CPUs: db.threads = 0)
  scripts = "scripts",
  app = "app",
  debug = false,
  reload = true,               -- edit scripts/ while it runs; `squall reload` works through pid_file
  pid_file = "var/squall.pid",
  shutdown_timeout = 10,
  limits = {
    max_header_bytes = 16384,
    max_body_bytes = 1048576,
    max_connections = 10000,
    header_timeout = 10,
    body_timeout = 30,
    keepalive_timeout = 75,
    send_timeout = 60,
  },
  log = { level = "info", error = "stderr", access = false },
  -- The app's own settings, read by handlers as squall.settings (scripts/notes.lua's page sizes
  -- and the origins its CORS middleware lets in).
  settings = {
    notes = { per_page = 20, max_per_page = 100 },
    cors = { origins = { "http://localhost:3000" }, max_age = 600 },
  },
  db = {
    -- tools/db.sh puts its server in SQUALL_DB_DIR when that is set (config.lua is plain Lua).
    socket = (os.getenv("SQUALL_DB_DIR") or "var/mariadb") .. "/mysqld.sock",
    user = "squall",
    password = "squall",
    database = "squall",
    -- Measured on a 2-core machine (`MODE=db bash bench/run.sh`, 2026-12-05): no database
    -- thread, each of the 2 workers driving 8 of the 16 connections on its own loop, was the
    -- best of pool_size 8 and 16 x threads 0, 1 and 2 on every route swept (/queries?queries=20
    -- at 64 clients: 4,063 req/s, 1.53x nginx + lua-resty-mysql, at 0.63x its CPU per query).
    -- One database thread shared a core with the MariaDB threads it woke, and the kernel left
    -- the other core idle 12% of the time; two cost more wake-ups per query. With threads = 0
    -- a worker busy in Lua reads its connections only once it is done: prefer threads >= 1 for
    -- handlers that compute for long between queries. threads = 0 shares pool_size out among
    -- the workers, so it needs pool_size >= workers.
    pool_size = 16,
    threads = 0,
    -- Up to 4 statements in flight per connection when every connection is busy (docs/
    -- database.md#pipelining): with it the same run gave 5,916 req/s on /queries?queries=20 at
    -- 64 clients, 2.38x nginx + lua-resty-mysql at 0.32x its CPU per query, and 1.97x to 3.74x
    -- on every database route (`PIPELINE=4 MODE=db bash bench/run.sh`). A slow statement holds
    -- up the ones queued behind it on its connection; 1 turns it off.
    pipeline = 4,
  },
}
