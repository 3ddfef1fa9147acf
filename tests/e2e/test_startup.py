"""Start-up while the app's top level is still loading: SIGTERM and SIGINT are serviced at once
(not after the load), and a check stopped that way fails. The start-up deadline itself is in
test_startup_deadline.py (it takes a minute)."""

import os
import signal
import subprocess
import time
import unittest

import harness
from harness import Server

MARK = "top-level-waiting"

# The top level waits with no deadline of its own: a sleep, or a task that never ends.
SLEEPING_TOP = '''
local squall = require "squall"
local app = require "app"
assert(io.open("%s", "w")):close()
squall.sleep(30)
return app
''' % MARK

WAITING_TOP = '''
local squall = require "squall"
local app = require "app"
local never = squall.spawn(function() squall.sleep(30) end)
squall.spawn(function() never:wait() end)
assert(io.open("%s", "w")):close()
never:wait()
return app
''' % MARK


class SignalDuringStartupTest(unittest.TestCase):

    def start_loading(self, top, **config):
        self.server = Server(config=dict({"app": "top"}, **config), scripts={"top.lua": top})
        self.server.start(wait=False)
        mark = os.path.join(self.server.dir, MARK)
        deadline = time.monotonic() + harness.START_TIMEOUT
        while not os.path.exists(mark):
            if not self.server.running() or time.monotonic() > deadline:
                self.fail("the top level did not start waiting\n%s" % self.server.describe())
            time.sleep(0.02)
        time.sleep(0.1)    # into the wait itself

    def tearDown(self):
        self.server.kill()
        self.server.cleanup()

    def assertStopsPromptly(self, sig, within=3.0):
        start = time.monotonic()
        self.server.signal(sig)
        self.server.expect_clean_exit(within + 2)    # exit 0, no sanitizer (leak) report
        took = time.monotonic() - start
        self.assertLess(took, within, "took %.1fs to stop during start-up" % took)
        self.assertIn("during start-up", self.server.log())
        self.assertNotIn("serving on", self.server.log())

    def test_sigterm_while_the_top_level_sleeps_stops_at_once_with_exit_zero(self):
        self.start_loading(SLEEPING_TOP)
        self.assertStopsPromptly(signal.SIGTERM)

    def test_sigint_while_the_top_level_sleeps_stops_at_once_with_exit_zero(self):
        self.start_loading(SLEEPING_TOP)
        self.assertStopsPromptly(signal.SIGINT)

    def test_sigterm_while_the_top_level_waits_on_a_task_stops_at_once(self):
        self.start_loading(WAITING_TOP, workers=1)
        self.assertStopsPromptly(signal.SIGTERM)

    def test_sigterm_during_a_check_exits_one(self):
        self.server = Server(config={"app": "top"}, scripts={"top.lua": SLEEPING_TOP})
        p = subprocess.Popen([self.server.bin, "--check", "-c", self.server.config_path],
                             cwd=self.server.dir, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            mark = os.path.join(self.server.dir, MARK)
            deadline = time.monotonic() + harness.START_TIMEOUT
            while not os.path.exists(mark) and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.02)
            time.sleep(0.1)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=5)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        err = err.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 1, err)
        self.assertNotIn(b"are ok", out)
        self.assertIsNone(harness.SANITIZER_RE.search(err), err)

    def test_a_server_that_finished_starting_still_drains_on_sigterm(self):
        self.server = Server()
        self.server.start()
        self.assertEqual(self.server.request("GET", "/hello/up").body, b"Hello, up")
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(5)
        self.assertIn("draining", self.server.log())


if __name__ == "__main__":
    harness.main()
