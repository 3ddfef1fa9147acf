-- The example application's configuration. Every key is documented in README.md.
-- The database settings point at the private server that tools/db.sh runs (var/mariadb).
return {
  listen = "127.0.0.1:8080",
  -- workers = 2,              -- default: the number of CPUs
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
    -- Measured on a 2-core machine (`MODE=db bash bench/run.sh`, 2026-12-04): 8 connections
    -- driven by 2 database threads served /queries?queries=20 at 256 clients and /fortunes at
    -- 64 best (3,345 and 33,200 req/s, 1.84x and 1.43x nginx + lua-resty-mysql); one thread is
    -- a little cheaper per request (/db: 14.9 against 18.5 us at 4 connections) but the single
    -- thread then shares a core with the MariaDB threads it wakes, and 4 connections leave
    -- /fortunes short of queries in flight.
    pool_size = 8,
    threads = 2,
  },
}
