-- bench/run-notes.sh's server: bench/notes/app.lua on the private MariaDB's unix socket.
local getenv = os.getenv
return {
  listen = "127.0.0.1:" .. (getenv("SQUALL_BENCH_PORT") or "8083"),
  workers = 2,
  scripts = ".",
  app = "app",
  log = { level = "warn" },
  db = {
    socket = getenv("SQUALL_DB_SOCKET") or "../../var/mariadb/mysqld.sock",
    user = "squall", password = "squall", database = "squall", pool_size = 4,
  },
}
