"""The network between squall and the database failing, through the test proxy (dbproxy.py):
black-holed (packets swallowed, no RST), reset, or slow. Squall talks TCP to the proxy, the proxy
to the shared MariaDB.

The contract: timeouts hold whatever the network does. A running query's caller gets kind
"timeout" (an uncaught one is a 500) within query_timeout + 0.5 s; queued requests get
"exhausted" (503) within queue_timeout + 0.5 s, never waiting for the network; once the network
is back everything recovers by itself within a few seconds.

ProxyToolTest checks the proxy itself against an echo server, so that a failure further down is
squall's and not the tool's."""

import os
import socket
import socketserver
import threading
import time

import dbharness
import harness
from dbharness import in_parallel, poll, timed
from dbproxy import DbProxy

MARGIN = 0.5              # the contract's allowance past query_timeout and queue_timeout
RECOVERY_TIMEOUT = 10.0   # a reconnect attempt stalled in the black hole ends by connect_timeout,
                          # then backoff (at most 5 s): a few seconds is the expectation
NO_ANSWER = 10.0          # a client gives up on a request after this long


# ---------------------------------------------------------------------------------------------
# The proxy itself

class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.server.received.append(data)
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Echo)
        self.received = []


class ProxyToolTest(harness.unittest.TestCase):

    def setUp(self):
        self.echo = _EchoServer()
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        self.addCleanup(self.echo.server_close)
        self.addCleanup(self.echo.shutdown)
        self.proxy = DbProxy("127.0.0.1", self.echo.server_address[1]).start()
        self.addCleanup(self.proxy.close)

    def client(self):
        s = socket.create_connection((self.proxy.host, self.proxy.port), timeout=2)
        self.addCleanup(s.close)
        return s

    def assertEchoes(self, s, data=b"ping"):
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            self.assertTrue(chunk, "the proxy closed the connection")
            got += chunk
        self.assertEqual(got, data)

    def assertSilent(self, s, wait=0.5):
        """Nothing arrives: no bytes, no FIN, no RST."""
        s.settimeout(wait)
        try:
            data = s.recv(65536)
        except socket.timeout:
            return
        finally:
            s.settimeout(2)
        self.fail("expected silence, got %r" % (data if data else "a FIN"))

    def test_pass_forwards_both_ways(self):
        s = self.client()
        self.assertEchoes(s, b"hello")
        self.assertEchoes(s, b"x" * 200000)

    def test_blackhole_swallows_everything_without_closing(self):
        old = self.client()
        self.assertEchoes(old)
        received = len(self.echo.received)
        self.proxy.blackhole()
        old.sendall(b"lost")
        self.assertSilent(old)
        new = self.client()             # accepted, but never connected onwards
        new.sendall(b"lost too")
        self.assertSilent(new)
        self.assertEqual(len(self.echo.received), received, "bytes got through the black hole")
        self.assertEqual(self.proxy.connections(), (0, 2))

    def test_after_a_blackhole_old_connections_stay_stalled_and_new_ones_pass(self):
        old = self.client()
        self.assertEchoes(old)
        self.proxy.blackhole()
        self.proxy.pass_()
        old.sendall(b"after")
        self.assertSilent(old)
        self.assertEchoes(self.client(), b"fresh")

    def test_reset_resets_current_and_new_connections(self):
        old = self.client()
        self.assertEchoes(old)
        self.proxy.reset()
        with self.assertRaises(ConnectionResetError):
            old.recv(100)
        with self.assertRaises(ConnectionResetError):   # at connect or at the first read
            self.client().recv(100)
        self.proxy.pass_()
        self.assertEchoes(self.client(), b"again")

    def test_delay_holds_each_chunk(self):
        s = self.client()
        self.proxy.delay(0.3)
        elapsed, _ = timed(self.assertEchoes, s, b"slow")
        self.assertGreater(elapsed, 0.55, "0.3 s each way")
        self.assertLess(elapsed, 3.0, "held far longer than asked")   # room for a loaded machine
        self.proxy.pass_()
        elapsed, _ = timed(self.assertEchoes, s, b"fast")
        self.assertLess(elapsed, 0.55, "still delayed after pass_()")

    def test_close_ends_every_connection(self):
        s = self.client()
        self.assertEchoes(s)
        self.proxy.close()
        s.settimeout(2)
        try:
            self.assertEqual(s.recv(100), b"", "expected a FIN")
        except ConnectionResetError:
            pass
        with self.assertRaises(OSError):
            socket.create_connection((self.proxy.host, self.proxy.port), timeout=1)


# ---------------------------------------------------------------------------------------------
# Squall behind the proxy

class ProxiedCase(dbharness.DbServerTestCase):
    """A fresh proxy and squall per test (each test breaks the network), on the shared database."""

    @classmethod
    def setUpClass(cls):
        cls.database = cls.get_database()

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.proxy = DbProxy(self.database.host, self.database.port).start()
        db = dict(self.db, host=self.proxy.host, port=self.proxy.port)
        self.server = dbharness.db_server(self.database, db, self.config)
        self.addCleanup(self.stop_both)
        try:
            self.server.start()
        except BaseException:
            self.server.kill()
            raise

    def stop_both(self):
        # The proxy first: its close ends the connections it stalled, so a squall that still
        # waits on one is not what the clean-exit check below measures.
        self.proxy.close()
        if self.server.proc is not None and self.server.proc.returncode is None:
            self.server.stop()      # (unless the test stopped it, successfully or not)

    def quick(self, v):
        """POST /sql SELECT ?+1 with the error caught: (seconds, status, "ok" or the error's kind;
        "no answer" after NO_ANSWER seconds)."""
        doc = {"sql": "SELECT ? + 1 AS v", "params": [v], "catch": True}
        t0 = time.monotonic()
        try:
            r = self.post("/sql", doc, NO_ANSWER)
        except socket.timeout:      # reported, not raised: the assertion shows every request
            return time.monotonic() - t0, None, "no answer"
        elapsed = time.monotonic() - t0
        if r.status != 200:
            return elapsed, r.status, None
        body = r.json()
        if "error" in body:
            return elapsed, 200, body["error"]["kind"]
        self.assertEqual(body["rows"], [{"v": v + 1}], r)
        return elapsed, 200, "ok"

    def warm(self, n):
        """n pooled connections open and used."""
        paths = [("/c/sleep?s=0.2&tag=warm%d" % i,) for i in range(n)]
        for r in in_parallel(self.get, paths):
            self.assertEqual(r.status, 200, "%r\n%s" % (r, self.server.log()[-3000:]))

    def assertRecovers(self):
        """Poll until a query succeeds (every failure before is prompt), then every request does,
        on every pooled connection."""
        waited, seen = poll(lambda: self.quick(1), lambda q: q[2] == "ok", RECOVERY_TIMEOUT, 0.2)
        self.assertEqual(seen[-1][2], "ok", "no success within %ss of the network coming back: "
                         "%r\n%s" % (RECOVERY_TIMEOUT, seen, self.server.log()[-3000:]))
        bound = max(self.db["query_timeout"], self.db["queue_timeout"]) + MARGIN
        for elapsed, status, kind in seen:
            self.assertLess(elapsed, bound, "a request waited for the network while it came "
                            "back: %r" % (seen,))
        # Every connection serves (none is left stalled), and keeps serving.
        self.assertFullPoolUsable(self.db["pool_size"], max_seconds=None)
        for _ in range(5):
            self.assertEqual(self.quick(2)[2], "ok")
        return waited


class BlackholeTest(ProxiedCase):
    db = {"pool_size": 2, "query_timeout": 2, "queue_timeout": 1, "connect_timeout": 1}

    def test_black_hole_answers_every_request_within_its_timeout_and_recovers(self):
        self.warm(2)
        self.proxy.blackhole()
        # Six at once on a pool of two: two run into the black hole, four queue behind them.
        burst = in_parallel(self.quick, [(i,) for i in range(6)], timeout=20)
        timeouts = [q for q in burst if q[2] == "timeout"]
        exhausted = [q for q in burst if q[2] == "exhausted"]
        self.assertEqual((len(timeouts), len(exhausted)), (2, 4),
                         "two running queries time out, four queued ones are turned away: %r"
                         % (burst,))
        for elapsed, _, _ in timeouts:
            self.assertGreater(elapsed, 2 - 0.1, "a timeout before query_timeout: %r" % (burst,))
            self.assertLess(elapsed, 2 + MARGIN,
                            "query_timeout = 2 but a running query waited %.2fs" % elapsed)
        for elapsed, _, _ in exhausted:
            self.assertLess(elapsed, 1 + MARGIN,
                            "queue_timeout = 1 but a queued query waited %.2fs" % elapsed)
        # Still black-holed: the timed-out connections are gone and new ones cannot open. Requests
        # are answered 503 in queue_timeout at most, not after a connect attempt or a stalled read.
        for elapsed, status, kind in in_parallel(self.quick, [(i,) for i in range(4)], timeout=20):
            self.assertIn(kind, ("exhausted", "unavailable"), (elapsed, status, kind))
            self.assertLess(elapsed, 1 + MARGIN, "a request waited %.2fs for the network" % elapsed)
        # An uncaught timeout is a 500, an uncaught exhausted a 503, each answered in time.
        self.assertResponse(self.get("/ping"), 200, "pong")
        elapsed, r = timed(self.get, "/c/quick?v=1", 10)
        self.assertUnavailable(r)
        self.assertLess(elapsed, 1 + MARGIN)
        self.proxy.pass_()
        self.assertRecovers()
        stats = self.pool_stats()     # a fresh squall: the counters are this test's
        self.assertGreaterEqual(stats["timeouts"], 2, stats)
        self.assertGreaterEqual(stats["exhausted"], 4, stats)
        self.assertEqual(stats["open"], 2, "the pool is whole again: %r" % stats)

    def test_black_hole_while_idle_costs_at_most_one_timeout_per_connection(self):
        # The connections stall while nobody uses them; after the network is back each one can
        # fail at most its own first query (a timeout), never hang past query_timeout.
        self.warm(2)
        self.proxy.blackhole()
        time.sleep(0.5)
        self.proxy.pass_()
        failures = []
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while time.monotonic() < deadline:
            q = self.quick(3)
            self.assertLess(q[0], 2 + MARGIN, "a query hung on a stalled connection: %r" % (q,))
            if q[2] == "ok":
                break
            failures.append(q)
        self.assertLessEqual(len(failures), 2, failures)
        self.assertRecovers()

    def test_stopping_squall_while_black_holed_is_prompt_and_clean(self):
        self.warm(2)
        self.proxy.blackhole()
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=1&tag=stop_in_black_hole", 10)
        time.sleep(0.3)
        t0 = time.monotonic()
        self.server.stop(timeout=2 + MARGIN + 3)     # the query times out, then the drain ends
        self.assertLess(time.monotonic() - t0, 2 + MARGIN + 3)
        r = sleeper.get()
        self.assertIn(r.status, (500, 503), "the stalled query ends with an error: %r" % r)


class ResetTest(ProxiedCase):
    db = {"pool_size": 2, "query_timeout": 2, "queue_timeout": 1, "connect_timeout": 1}

    def test_reset_fails_requests_at_once_with_503_and_recovers(self):
        self.warm(2)
        tag = "reset_mid_query_%d" % os.getpid()
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=3&tag=" + tag, 10)
        self.database.running_id("SELECT SLEEP%" + tag + "%")
        t0 = time.monotonic()
        self.proxy.reset()
        r = sleeper.get()
        self.assertUnavailable(r)
        self.assertLess(time.monotonic() - t0, 1.0, "a reset connection must fail at once")
        # While every new connection is reset too: prompt 503s.
        for _ in range(3):
            elapsed, status, kind = self.quick(1)
            self.assertIn(kind, ("unavailable", "exhausted"), (elapsed, status, kind))
            self.assertLess(elapsed, 1 + MARGIN)
        self.proxy.pass_()
        self.assertRecovers()


class SlowNetworkTest(ProxiedCase):
    db = {"pool_size": 2, "query_timeout": 2, "queue_timeout": 2, "connect_timeout": 2}

    def test_a_slow_network_is_not_mistaken_for_a_dead_one(self):
        self.warm(2)
        self.proxy.delay(0.2)
        for _ in range(3):
            elapsed, status, kind = self.quick(4)
            self.assertEqual(kind, "ok")
            self.assertGreater(elapsed, 0.35, "the proxy did not delay (0.2 s each way)")
        self.assertFullPoolUsable(2, max_seconds=None)
        self.proxy.pass_()
        stats = self.pool_stats()
        self.assertEqual((stats["timeouts"], stats["exhausted"]), (0, 0), stats)



class AbandonedKillTest(ProxiedCase):
    """A KILL QUERY that its side connection swallows: the statement it was aimed at ends by
    itself, and the side connection is given up at connect_timeout. The KILL could still reach
    the server and interrupt whatever that pooled connection ran next, so the connection must be
    replaced, and the query waiting for it served by the replacement, not stranded."""

    db = {"pool_size": 1, "query_timeout": 1, "queue_timeout": 5, "connect_timeout": 0.5}

    def conn_id(self):
        return self.sql("SELECT CONNECTION_ID() AS id")["rows"][0]["id"]

    def test_a_connection_whose_kill_went_unanswered_is_replaced(self):
        # A first timeout opens the side connection (the newest through the proxy) and kills.
        self.get("/c/sleep?s=3&tag=abandon_first")
        self.assertEqual(self.proxy.accepted, 2, "the pooled connection and the side one")
        self.proxy.stall_newest()
        before = self.conn_id()
        # Past query_timeout, so its KILL goes out (and is swallowed), but the statement ends by
        # itself before the watchdog would give up on it (0.4 s later).
        r = self.get("/c/sleep?s=1.2&tag=abandon_second")
        self.assertEqual(r.status, 200, "%r\n%s" % (r, self.server.log()[-3000:]))
        t0 = time.monotonic()
        after = self.conn_id()
        self.assertLess(time.monotonic() - t0, 2.5, "the next query waited for a stranded connection")
        self.assertNotEqual(before, after, "the connection a KILL may still reach ran another query")
        self.assertEqual(self.conn_id(), after)      # and the replacement stays


if __name__ == "__main__":
    harness.main()
