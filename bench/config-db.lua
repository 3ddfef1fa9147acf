-- Squall config used by the DB mode of bench/run.sh (bench/run-db.sh). Paths are relative to
-- this file. The example app (scripts/app.lua + scripts/techempower.lua) serves the routes.
-- run-db.sh passes the port, the pool size and the MariaDB socket in the environment.
local getenv = (os and os.getenv) or function() return nil end

return {
  listen = "127.0.0.1:" .. (getenv("SQUALL_BENCH_PORT") or "8081"),
  workers = 2,
  scripts = "../scripts",
  app = "app",
  reload = false,
  log = { level = "warn", access = false },
  db = {
    socket = getenv("SQUALL_BENCH_DB_SOCKET") or "../var/mariadb/mysqld.sock",
    user = "squall",
    password = "squall",
    database = "squall",
    pool_size = tonumber(getenv("SQUALL_BENCH_POOL") or "4"),
  },
}
