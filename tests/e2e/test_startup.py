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

# Worker 1 serves while worker 2's top level still waits.
HALF_STARTED_TOP = '''
local squall = require "squall"
local core = require "squall.core"
local app = require "app"
if core.worker_id == 2 then
  assert(io.open("%s", "w")):close()
  squall.sleep(30)
end
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

    def assertStopsPromptly(self, sig, within=3.0, answer_from=None):
        start = time.monotonic()
        self.server.signal(sig)
        if answer_from is not None:    # a request in flight is answered (a drain, not a cut)
            r = answer_from.read_response()
            self.assertEqual((r.status, r.body), (200, b"spun 500"), r)
        self.server.expect_clean_exit(within + 2)    # exit 0, no sanitizer (leak) report
        took = time.monotonic() - start
        self.assertLess(took, within, "took %.1fs to stop during start-up" % took)
        self.assertIn("during start-up", self.server.log())
        self.assertNotIn("serving on", self.server.log())    # main never finished starting

    def test_sigterm_while_the_top_level_sleeps_stops_at_once_with_exit_zero(self):
        self.start_loading(SLEEPING_TOP)
        self.assertStopsPromptly(signal.SIGTERM)

    def test_sigint_while_the_top_level_sleeps_stops_at_once_with_exit_zero(self):
        self.start_loading(SLEEPING_TOP)
        self.assertStopsPromptly(signal.SIGINT)

    def test_sigterm_while_the_top_level_waits_on_a_task_stops_at_once(self):
        self.start_loading(WAITING_TOP, workers=1)
        self.assertStopsPromptly(signal.SIGTERM)

    def test_sigterm_while_one_worker_serves_and_another_loads_drains_the_one_serving(self):
        self.start_loading(HALF_STARTED_TOP, workers=2)
        # Both sockets listen from the start, so the kernel may queue a connection on worker 2's,
        # which is not accepted while it loads: try new connections until worker 1 has one.
        c = None
        for attempt in range(40):
            mark = os.path.join(self.server.dir, "spin-started-%d" % attempt)
            c = self.server.connect(timeout=10)
            c.send(harness.build_request("GET", "/spin?ms=500&mark=" + mark))
            deadline = time.monotonic() + 0.5
            while not os.path.exists(mark) and time.monotonic() < deadline:
                time.sleep(0.01)
            if os.path.exists(mark):
                break
            c.close()
            c = None
        self.assertIsNotNone(c, "worker 1 never ran the /spin handler")
        try:
            self.assertStopsPromptly(signal.SIGTERM, answer_from=c)
        finally:
            c.close()

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

    def test_a_request_in_flight_is_still_answered_when_sigterm_comes_soon_after_start(self):
        # One worker may serve while another still loads: a signal then is a drain for the one
        # serving (its request is answered), whichever way main saw start-up at that moment.
        self.server = Server()
        self.server.start()
        mark = os.path.join(self.server.dir, "spin-started")
        c = self.server.connect(timeout=10)
        try:
            c.send(harness.build_request("GET", "/spin?ms=500&mark=" + mark))
            deadline = time.monotonic() + 5
            while not os.path.exists(mark):
                self.assertLess(time.monotonic(), deadline, "the /spin handler did not start")
                time.sleep(0.01)
            self.server.signal(signal.SIGTERM)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"spun 500"), r)
        finally:
            c.close()
        self.server.expect_clean_exit(5)


if __name__ == "__main__":
    harness.main()
