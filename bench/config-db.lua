-- Squall config used by the DB mode of bench/run.sh (bench/run-db.sh). Paths are relative to
-- this file. The example app (scripts/app.lua + scripts/techempower.lua) serves the routes.
-- run-db.sh passes everything in the environment:
--   SQUALL_BENCH_PORT       port to listen on (127.0.0.1)
--   SQUALL_BENCH_POOL       db.pool_size
--   SQUALL_BENCH_THREADS    db.threads; the key is only set when this is set (older binaries
--                           reject it)
--   SQUALL_BENCH_PIPELINE  db.pipeline; the key is only set when this is set
--   SQUALL_BENCH_SOCKET=1   connect over the unix socket SQUALL_BENCH_DB_SOCKET; otherwise over
--                           TCP to SQUALL_BENCH_DB_HOST:SQUALL_BENCH_DB_PORT
local getenv = (os and os.getenv) or function() return nil end

local db = {
  user = "squall",
  password = "squall",
  database = "squall",
  pool_size = tonumber(getenv("SQUALL_BENCH_POOL") or "4"),
}
if getenv("SQUALL_BENCH_SOCKET") == "1" then
  db.socket = getenv("SQUALL_BENCH_DB_SOCKET") or "../var/mariadb/mysqld.sock"
else
  db.host = getenv("SQUALL_BENCH_DB_HOST") or "127.0.0.1"
  db.port = tonumber(getenv("SQUALL_BENCH_DB_PORT") or "3306")
end
local threads = getenv("SQUALL_BENCH_THREADS")
if threads and threads ~= "" then db.threads = tonumber(threads) end
local pipeline = getenv("SQUALL_BENCH_PIPELINE")
if pipeline and pipeline ~= "" then db.pipeline = tonumber(pipeline) end

return {
  listen = "127.0.0.1:" .. (getenv("SQUALL_BENCH_PORT") or "8081"),
  workers = 2,
  scripts = "../scripts",
  app = "app",
  reload = false,
  log = { level = "warn", access = false },
  db = db,
}
