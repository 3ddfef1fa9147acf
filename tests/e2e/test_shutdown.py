"""Graceful shutdown on SIGTERM: idle connections closed, in-flight requests finished, no new
connections, exit code 0."""

import os
import signal
import socket
import time
import unittest

import harness
from harness import Server, build_request


class ShutdownTest(unittest.TestCase):

    def setUp(self):
        self.server = Server(config={"shutdown_timeout": 10})
        self.server.start()

    def tearDown(self):
        self.server.kill()
        self.server.cleanup()

    def sigterm_and_expect_exit(self, within):
        """SIGTERM; assert exit 0 within `within` seconds."""
        start = time.monotonic()
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(within)
        return time.monotonic() - start

    def start_spin(self, ms, then=b""):
        """A connection whose GET /spin handler is running (not merely sent) on return;
        `then` is pipelined behind it."""
        mark = os.path.join(self.server.dir, "spin-started-%d" % ms)
        c = self.server.connect(timeout=10)
        c.send(build_request("GET", "/spin?ms=%d&mark=%s" % (ms, mark)) + then)
        deadline = time.monotonic() + 5
        while not os.path.exists(mark):
            if time.monotonic() > deadline:
                c.close()
                self.fail("the /spin handler did not start\n%s" % self.server.describe())
            time.sleep(0.01)
        return c

    def assertRefused(self, attempts=6):
        """Connecting fails at once (the listeners are closed), every time: with one
        SO_REUSEPORT socket per worker the kernel spreads attempts over the workers."""
        accepted = 0
        for _ in range(attempts):
            try:
                socket.create_connection((harness.HOST, self.server.port), timeout=2).close()
                accepted += 1
            except ConnectionRefusedError:
                pass
        self.assertEqual(accepted, 0, "%d of %d connections made after SIGTERM were accepted"
                         % (accepted, attempts))

    def test_idle_server_exits_zero_on_sigterm(self):
        self.assertLess(self.sigterm_and_expect_exit(5), 3)
        with self.assertRaises(ConnectionError):
            socket.create_connection((harness.HOST, self.server.port), timeout=1).close()

    def test_sigterm_with_idle_keepalive_connection_exits_promptly(self):
        # The client neither sends nor closes: the server's own bound (lingering for the
        # client's FIN included) must still end within a couple of seconds.
        with self.server.connect() as c:
            c.send(build_request("GET", "/hello/ka"))
            self.assertEqual(c.read_response().body, b"Hello, ka")
            took = self.sigterm_and_expect_exit(6)
            self.assertLess(took, 4, "an idle keep-alive connection held up shutdown")
            self.assertIsNotNone(c.wait_closed(1), "idle connection not closed")
            self.assertEqual(c.buf, b"")

    def test_sigterm_closes_idle_connections_at_once(self):
        conns = []
        try:
            for i in range(10):
                c = self.server.connect()
                c.send(build_request("GET", "/seq/%d" % i))
                self.assertEqual(c.read_response().body, b"seq %d" % i)
                conns.append(c)
            conns.append(self.server.connect())    # connected, never sent anything
            time.sleep(0.1)
            start = time.monotonic()
            self.server.signal(signal.SIGTERM)
            # Like a real client, each one closes its end when it sees the server's FIN.
            for c in conns:
                self.assertIsNotNone(c.wait_closed(2), "idle connection not closed")
                self.assertEqual(c.buf, b"")
                c.close()
            self.assertLess(time.monotonic() - start, 1.5)
            self.server.expect_clean_exit(5)
            took = time.monotonic() - start
            self.assertLess(took, 2, "exit took %.2fs once every client had closed" % took)
        finally:
            for c in conns:
                c.close()

    def test_in_flight_request_completes_before_exit(self):
        c = self.start_spin(800)
        try:
            self.server.signal(signal.SIGTERM)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"spun 800")
            # After its response the connection is closed rather than kept for more.
            self.assertIsNotNone(c.wait_closed(3), "connection kept open after shutdown began")
        finally:
            c.close()
        self.server.expect_clean_exit(5)

    def test_request_still_uploading_at_sigterm_is_answered(self):
        # Its client has begun a request, so it is in flight like a running handler: cutting
        # it off would lose the upload with no answer. The 100 Continue shows that the worker
        # has parsed the head (the request has begun); half the body, then the signal.
        with self.server.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", "10"),
                                                        ("Expect", "100-continue")]))
            self.assertEqual(c.read_response().status, 100)
            c.send(b"hello")
            self.server.signal(signal.SIGTERM)
            self.server.wait_for_log(lambda log: "draining" in log)
            self.assertTrue(c.is_open(0.5), "closed a connection whose request was arriving")
            c.send(b"wor")    # the rest in two reads: the first does not complete it
            self.assertTrue(c.is_open(0.3), "closed after a piece that did not end the request")
            c.send(b"ld")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"helloworld"), r)
            self.assertEqual((r.header("Connection") or "").lower(), "close", r)
            self.assertIsNotNone(c.wait_closed(3), "connection kept open after shutdown began")
        self.server.expect_clean_exit(5)

    def test_new_connections_refused_after_sigterm(self):
        # An idle keep-alive client that never closes keeps the process up for a moment.
        with self.server.connect() as c:
            c.send(build_request("GET", "/hello/ka"))
            self.assertEqual(c.read_response().body, b"Hello, ka")
            self.server.signal(signal.SIGTERM)
            time.sleep(0.2)
            self.assertRefused()
            self.server.expect_clean_exit(6)

    def test_new_connections_refused_while_request_in_flight(self):
        c = self.start_spin(1200)
        try:
            self.server.signal(signal.SIGTERM)
            time.sleep(0.3)    # still draining: the spinning request is not done
            self.assertTrue(self.server.running(), "exited before the in-flight request ended")
            self.assertRefused()
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"spun 1200")
        finally:
            c.close()
        self.server.expect_clean_exit(5)

    def test_pipelined_requests_in_flight_are_answered_before_exit(self):
        c = self.start_spin(400, then=build_request("GET", "/seq/after"))
        try:
            self.server.signal(signal.SIGTERM)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"spun 400"), r)
            # The pipelined request already received may be answered or dropped, but nothing
            # else and no garbage may follow.
            rest = c.read_until_close(5)
            if rest:
                c.buf, c.eof = rest, True
                r2 = c.read_response()
                self.assertEqual((r2.status, r2.body), (200, b"seq after"), r2)
        finally:
            c.close()
        self.server.expect_clean_exit(5)


BACKGROUND_APP = '''
local squall = require "squall"
local app = require "app"
-- Tasks that outlive their request: one sleeps long, one waits on it.
app:get("/background", function()
  local sleeper = squall.spawn(function() squall.sleep(30) end)
  squall.spawn(function() sleeper:wait() end)
  return "spawned"
end)
-- The same, with the request itself waiting too (it is still in flight at SIGTERM).
app:get("/background-wait", function()
  local sleeper = squall.spawn(function() squall.sleep(30) end)
  squall.spawn(function() sleeper:wait() end)
  sleeper:wait()
  return "never"
end)
return app
'''


class ShutdownAbandonsTasksTest(unittest.TestCase):
    """Tasks still waiting at exit are freed, not leaked (LeakSanitizer in the ASan build)."""

    def setUp(self):
        self.server = Server(config={"app": "bgapp", "shutdown_timeout": 1},
                             scripts={"bgapp.lua": BACKGROUND_APP})
        self.server.start()

    def tearDown(self):
        self.server.kill()
        self.server.cleanup()

    def test_sleeping_task_and_its_waiter_are_freed_at_sigterm(self):
        for i in range(3):
            r = self.server.request("GET", "/background")
            self.assertEqual((r.status, r.body), (200, b"spawned"), r)
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(5)

    def test_request_waiting_on_a_sleeping_task_is_freed_at_shutdown_timeout(self):
        c = self.server.connect()
        try:
            c.send(build_request("GET", "/background-wait"))
            time.sleep(0.3)
            self.server.signal(signal.SIGTERM)
            self.server.expect_clean_exit(5)    # shutdown_timeout (1 s) forces the rest
        finally:
            c.close()


if __name__ == "__main__":
    harness.main()
