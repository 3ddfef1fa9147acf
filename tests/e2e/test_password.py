"""squall.password hashes off the event loop: while one request waits for a slow argon2id hash,
the same (single) worker keeps answering other requests at once."""

import threading
import time

import harness

APP = """local squall = require "squall"
local password = require "squall.password"
local app = squall.app()
app:get("/slow-hash", function(req)
  -- Deliberately slow: 12 passes over 256 MiB, about a second or more on one core.
  local h = password.hash("pw", { ops = 12, mem = 256 * 1024 * 1024 })
  return { ok = password.verify("pw", h) }
end)
app:get("/ping", function(req) return "pong" end)
return app
"""


class PasswordOffLoopTest(harness.ServerTestCase):
    config = {"workers": 1}
    scripts = {"app.lua": APP}

    def test_a_slow_hash_does_not_stall_the_worker(self):
        done = {}

        def slow():
            t0 = time.monotonic()
            r = self.request("GET", "/slow-hash", timeout=60)
            done["status"], done["seconds"], done["at"] = r.status, time.monotonic() - t0, time.monotonic()
            done["body"] = r.json()

        th = threading.Thread(target=slow, daemon=True)
        th.start()
        time.sleep(0.2)                       # the hash is under way on a pool thread
        pings = []
        for _ in range(5):
            t0 = time.monotonic()
            r = self.request("GET", "/ping")
            pings.append((time.monotonic() - t0, time.monotonic()))
            self.assertEqual(r.body, b"pong")
        th.join(60)
        self.assertEqual(done.get("status"), 200, done)
        self.assertEqual(done["body"], {"ok": True})
        # The pings were answered while the hash ran, each in a small part of its time.
        self.assertGreater(done["seconds"], 0.5, "the hash was too quick to show anything: %r" % done)
        for latency, at in pings:
            self.assertLess(at, done["at"], "a ping waited for the hash: %r %r" % (pings, done))
            self.assertLess(latency, done["seconds"] / 4, "a ping was slow: %r %r" % (pings, done))


if __name__ == "__main__":
    harness.main()
