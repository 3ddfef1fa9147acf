"""Hot reload under load: keep-alive clients hammer the server while the scripts are rewritten 50
times. No request fails, no keep-alive connection is dropped, and every response is exactly one
version's body: a request runs start to finish on the generation it started on."""

import random
import time
import unittest

import harness
import reloadharness
from reloadharness import KeepAliveLoad, ReloadServer

REWRITES = 50
THREADS = 8

# Kept the same in every version: module-level state that each version's top level fills in.
STORE = """local M = {}
function M.set(v) M.value = v end
function M.get() return M.value end
return M
"""


def body_of(k):
    """What version k answers; odd versions are longer so that a mix changes the length too."""
    pad = " " + "odd" * 20 if k % 2 else ""
    return "version %d: a%d b%d%s" % (k, k, k, pad)


def app_of(k):
    # The handler reads a local set at load time, yields, reads the store module's value (also
    # set at load time), yields again, and joins them: a request resumed on another
    # generation's state, or sharing its modules, would give a mixed body.
    pad = ' .. " " .. string.rep("odd", 20)' if k % 2 else ""
    return ('local squall = require "squall"\n'
            'local store = require "store"\n'
            'local A = "a%d"\n'
            'store.set("b%d")\n'
            'local app = squall.app()\n'
            + reloadharness.STATUS_ROUTE +
            'app:get("/v", function(req)\n'
            '  local a = A\n'
            '  squall.sleep(0)\n'
            '  local b = store.get()\n'
            '  squall.sleep(0)\n'
            '  return "version %d: " .. a .. " " .. b%s\n'
            'end)\n'
            'return app\n') % (k, k, k, pad)


class ReloadUnderLoadTest(unittest.TestCase):

    def setUp(self):
        self.server = ReloadServer({"app.lua": app_of(0), "store.lua": STORE}, reload=True)
        self.addCleanup(self.server.cleanup)
        self.addCleanup(self.server.kill)
        self.server.start()

    def test_fifty_rewrites_under_keepalive_load_fail_no_request_and_never_mix_versions(self):
        server = self.server
        r = server.request("GET", "/v")
        self.assertEqual((r.status, r.body), (200, body_of(0).encode()), r)

        rng = random.Random(1234)
        load = KeepAliveLoad(server.port, "/v", threads=THREADS).start()
        try:
            time.sleep(0.3)
            sighups = 0
            for k in range(1, REWRITES + 1):
                # Atomic (rename) writes: a reload never sees half a file, so every attempt
                # must succeed.
                server.write_script("app.lua", app_of(k), atomic=True)
                if k % 5 == 0:        # on-demand reloads in the middle of the rewriting
                    server.sighup()
                    sighups += 1
                if k == REWRITES // 2:
                    time.sleep(0.6)   # a pause long enough for the watcher's own reload
                else:
                    time.sleep(rng.uniform(0.06, 0.10))
            # The last version must take over (the watcher settles after the last write).
            final = body_of(REWRITES).encode()
            deadline = time.monotonic() + 3
            while True:
                r = server.request("GET", "/v")
                if (r.status, r.body) == (200, final) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual((r.status, r.body), (200, final),
                             "the last version is not serving\n%s" % server.describe())
            time.sleep(0.8)    # the watcher's reload of the last write, if any, is done too
        finally:
            load.stop()

        expected = {body_of(k).encode() for k in range(REWRITES + 1)}
        msg = "\n" + server.describe()
        self.assertEqual(load.errors, [], "failed or reset requests" + msg)
        self.assertGreater(len(load.responses), 200, "the load loop barely ran" + msg)
        bad = [(i, st, body) for i, st, body, _ in load.responses
               if st != 200 or body not in expected]
        self.assertEqual(bad[:20], [], "%d responses that are not one version's body%s"
                         % (len(bad), msg))
        closing = [x for x in load.responses if (x[3] or "").lower() == "close"]
        self.assertEqual(closing[:5], [], "responses closed their keep-alive connection")
        self.assertEqual(load.connects, [1] * THREADS,
                         "keep-alive connections were dropped and reopened" + msg)
        seen = {body for _, _, body, _ in load.responses}
        self.assertGreaterEqual(len(seen), 5, "the clients saw only %d versions" % len(seen))

        generations = server.serving_generations()
        self.assertGreaterEqual(len(generations), 5, "too few successful reloads" + msg)
        self.assertEqual(generations, list(range(1, len(generations) + 1)), msg)
        self.assertEqual(server.failed_reloads(), [], msg)
        st = server.status()
        self.assertEqual((st["ok"], st["generation"]), (True, generations[-1]), st)
        self.assertNotIn("error", st)
        server.stop()    # exit 0, no sanitizer report


if __name__ == "__main__":
    harness.main()
