-- Squall config used by bench/run-static.sh (MODE=static bench/run.sh): the bench app (its
-- /plaintext tells run.sh the server is up) and the files run-static.sh writes, under /static.
-- run-static.sh passes the port in SQUALL_BENCH_PORT and the files' directory (absolute) in
-- SQUALL_BENCH_STATIC_DIR.
local port = (os and os.getenv and os.getenv("SQUALL_BENCH_PORT")) or "8081"
local dir = (os and os.getenv and os.getenv("SQUALL_BENCH_STATIC_DIR")) or "static"

return {
  listen = "127.0.0.1:" .. port,
  workers = 2,
  scripts = "app",
  app = "app",
  log = { level = "warn", access = false },
  static = { ["/static"] = dir },
}
