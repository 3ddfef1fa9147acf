-- Squall config used by bench/run.sh. Paths are relative to this file.
-- run.sh picks a free port and passes it in SQUALL_BENCH_PORT.
local port = (os and os.getenv and os.getenv("SQUALL_BENCH_PORT")) or "8081"

return {
  listen = "127.0.0.1:" .. port,
  workers = 2,
  scripts = "app",
  app = "app",
  log = { level = "warn", access = false },
}
