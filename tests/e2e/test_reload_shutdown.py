"""Shutdown meets reload: SIGTERM while a new generation is loading, or while a request still
runs on a retired generation, ends the process with exit 0 like any other graceful shutdown."""

import os
import signal
import time
import unittest

import dbharness
import harness
from reloadharness import ReloadServer, app_source

SLOW = 'app:get("/slow", function(req) squall.sleep(tonumber(req.query.s)) return "slow %s" end)\n'


class ShutdownDuringReloadTest(unittest.TestCase):
    with_db = False

    def setUp(self):
        config = {"shutdown_timeout": 5}
        if self.with_db:
            config["db"] = dbharness.shared_db().config()
        self.server = ReloadServer({"app.lua": app_source('"v1"', SLOW % "v1")}, reload=False,
                                   config=config)
        self.addCleanup(self.server.cleanup)
        self.addCleanup(self.server.kill)
        self.server.start()

    def sigterm_and_expect_exit(self, within):
        t0 = time.monotonic()
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(within)    # exit 0 and no sanitizer report
        self.assertFalse(os.path.exists(self.server.pid_path), "pid file left behind")
        return time.monotonic() - t0

    def test_sigterm_while_a_new_generation_loads_exits_zero_promptly(self):
        # The new code takes a second to load (a sleep at its top level).
        self.server.write_script("app.lua", app_source('"v2"', header="squall.sleep(1.0)\n"))
        self.server.sighup()
        self.assertIn("loading a new generation",
                      self.server.wait_for_log(lambda t: "loading a new generation" in t, 2))
        time.sleep(0.2)
        took = self.sigterm_and_expect_exit(4)
        self.assertLess(took, 3, "shutdown waited for the loading generation too long")

    def test_sigterm_while_a_reload_finishes_loading_exits_zero(self):
        self.server.write_script("app.lua", app_source('"v2"', header="squall.sleep(0.3)\n"))
        self.server.sighup()
        self.assertIn("loading a new generation",
                      self.server.wait_for_log(lambda t: "loading a new generation" in t, 2))
        self.server.signal(signal.SIGTERM)    # the load ends while draining
        self.server.expect_clean_exit(4)

    def test_sighup_while_draining_does_not_hold_up_exit(self):
        sleeper = harness.ThreadResult(self.server.request, "GET", "/slow?s=0.6", None, None, 10)
        time.sleep(0.2)
        self.server.signal(signal.SIGTERM)
        time.sleep(0.1)
        self.server.write_script("app.lua", app_source('"v2"', SLOW % "v2"))
        self.server.sighup()
        resp = sleeper.get(10)
        self.assertEqual((resp.status, resp.body), (200, b"slow v1"), resp)
        self.server.expect_clean_exit(4)

    def test_request_on_a_retired_generation_finishes_before_exit(self):
        sleeper = harness.ThreadResult(self.server.request, "GET", "/slow?s=1.0", None, None, 10)
        time.sleep(0.2)
        self.server.write_script("app.lua", app_source('"v2"', SLOW % "v2"))
        r = self.server.cli_reload()
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        self.assertEqual(self.server.request("GET", "/v").body, b"v2")
        self.server.signal(signal.SIGTERM)
        resp = sleeper.get(10)
        self.assertEqual((resp.status, resp.body), (200, b"slow v1"), resp)
        self.server.expect_clean_exit(4)


class ShutdownDuringReloadWithDatabaseTest(ShutdownDuringReloadTest):
    """The same with a database pool configured (unused by the app)."""
    with_db = True


if __name__ == "__main__":
    harness.main()
