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
  -- The app's own settings, read by handlers as squall.settings (scripts/notes.lua's page sizes).
  settings = {
    notes = { per_page = 20, max_per_page = 100 },
  },
  db = {
    -- tools/db.sh puts its server in SQUALL_DB_DIR when that is set (config.lua is plain Lua).
    socket = (os.getenv("SQUALL_DB_DIR") or "var/mariadb") .. "/mysqld.sock",
    user = "squall",
    password = "squall",
    database = "squall",
    -- On a 2-core machine `MODE=db bash bench/run.sh` measured 4 and 8 level, 2 about 6% behind
    -- (finished queries go back to the workers in batches while work is queued, which a couple
    -- more connections feed) and 1 far behind (one query in flight). 8 costs MariaDB more CPU
    -- per query, so 4, the default.
    pool_size = 4,
  },
}
