"""Shutdown meets reload: SIGTERM while a new generation is loading, or while a request still
runs on a retired generation, ends the process with exit 0 like any other graceful shutdown."""

import os
import signal
import time
import unittest

import dbharness
import harness
from reloadharness import SLOW, ReloadServer, app_source, start_slow


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
        sleeper = start_slow(self.server, 0.6)
        self.server.signal(signal.SIGTERM)
        time.sleep(0.1)
        self.server.write_script("app.lua", app_source('"v2"', SLOW % "v2"))
        self.server.sighup()
        resp = sleeper.get(10)
        self.assertEqual((resp.status, resp.body), (200, b"slow v1"), resp)
        self.server.expect_clean_exit(4)

    def test_request_on_a_retired_generation_finishes_before_exit(self):
        sleeper = start_slow(self.server, 1.0)
        self.server.write_script("app.lua", app_source('"v2"', SLOW % "v2"))
        r = self.server.cli_reload()
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        self.assertEqual(self.server.request("GET", "/v").body, b"v2")
        self.server.signal(signal.SIGTERM)
        resp = sleeper.get(10)
        self.assertEqual((resp.status, resp.body), (200, b"slow v1"), resp)
        self.server.expect_clean_exit(4)


class ShutdownDuringReloadWithDatabaseTest(ShutdownDuringReloadTest):
    """The same with a database pool configured (unused by the app), and a new generation whose
    top level starts a loop that always has a query out."""
    with_db = True

    def test_a_generation_that_loads_during_the_drain_does_not_start_its_loop(self):
        # A request in flight keeps the drain going while the new code finishes loading. It never
        # serves; were its loop to run, the drain would wait for its queries until
        # shutdown_timeout (5 s here).
        sleeper = start_slow(self.server, 1.2)
        loop = ('local db = require "squall.db"\n'
                'squall.sleep(0.3)\n'
                'squall.spawn(function() while true do db.query("SELECT SLEEP(0.2)") end end)\n')
        self.server.write_script("app.lua", app_source('"v2"', SLOW % "v2", header=loop))
        self.server.sighup()
        self.server.wait_for_log(lambda t: "loading a new generation" in t, 2)
        started = time.monotonic()
        self.server.signal(signal.SIGTERM)
        resp = sleeper.get(10)
        self.assertEqual((resp.status, resp.body), (200, b"slow v1"), resp)
        self.server.expect_clean_exit(8)
        took = time.monotonic() - started
        self.assertLess(took, 3.5, "the drain took %.1fs: the new generation's loop ran" % took)


if __name__ == "__main__":
    harness.main()
