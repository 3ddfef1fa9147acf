"""The database going away and coming back, on a throwaway MariaDB of this file's own: squall
starts while it is down (503 for DB routes, 200 for the rest) and recovers by itself once it is up;
a restart under a running squall costs a few 503s, never a 500 or a hang."""

import time

import dbharness
import harness
from dbharness import in_parallel, poll, timed

RECOVERY_TIMEOUT = 10.0      # backoff is capped at 5 s, so a few seconds is the expectation
SETTLE = 6.0                 # after this long back up, no request may fail any more


def setUpModule():
    dbharness.ThrowawayDbTestCase.throwaway = dbharness.ThrowawayDB()


def tearDownModule():
    dbharness.ThrowawayDbTestCase.throwaway.destroy()


class OutageCase(dbharness.ThrowawayDbTestCase):

    def assertRecovers(self, path="/c/quick?v=1", expected=None, max_unavailable=None):
        """Poll a DB route until it answers 200: everything before must be a prompt 503, and
        there may be at most max_unavailable of them."""
        def probe():
            return timed(self.get, path)

        waited, seen = poll(probe, lambda er: er[1].status == 200, RECOVERY_TIMEOUT, 0.2)
        elapsed, last = seen[-1]
        self.assertEqual(last.status, 200, "no 200 within %ss of the database coming back; "
                         "last %r\n%s" % (RECOVERY_TIMEOUT, last, self.server.log()[-3000:]))
        if expected is not None:
            self.assertJson(last, 200, expected)
        for e, r in seen[:-1]:
            self.assertUnavailable(r)
            self.assertLess(e, 2.0, "a 503 took %.2fs" % e)
        if max_unavailable is not None:
            self.assertLessEqual(len(seen) - 1, max_unavailable,
                                 "%d 503s before the first 200" % (len(seen) - 1))
        return waited


class DownAtStart:
    """Mixed into an OutageCase with db_running = False."""

    db_running = False

    def tearDown(self):
        self.throwaway.stop()

    def test_starts_with_the_database_down_and_recovers_when_it_comes_up(self):
        self.assertFalse(self.throwaway.status(), "the throwaway database should be down")
        for _ in range(3):
            elapsed, r = timed(self.get, "/c/quick?v=1")
            self.assertUnavailable(r)
            self.assertLess(elapsed, 2.0, "a 503 must come quickly, not after a hang")
        self.assertResponse(self.get("/ping"), 200, "pong")
        doc = self.sql("SELECT 1 AS one", catch=True)
        self.assertEqual((doc["error"]["kind"], doc["error"]["sqlstate"]), ("unavailable", "08S01"),
                         doc)
        self.assertIn(doc["error"]["code"], (2002, 2003), doc)     # socket / TCP "can't connect"
        self.assertTrue(doc["error"]["unavailable"], "db.is_unavailable(err) should say so")
        self.assertLog(lambda log: "[warn]" in log and "db: cannot connect" in log,
                       "no warning about the unreachable database")
        self.assertLog(lambda log: "GET /c/quick" in log and "database unavailable" in log,
                       "the 503 is not logged with its cause")
        self.throwaway.start()
        waited = self.assertRecovers(expected={"v": 2})
        self.assertLess(waited, RECOVERY_TIMEOUT)
        self.assertFullPoolUsable(2)    # both connections come back, not just one
        self.assertResponse(self.get("/ping"), 200, "pong")


class DownAtStartTcpTest(DownAtStart, OutageCase):
    db = {"pool_size": 2, "connect_timeout": 2}


class DownAtStartSocketTest(DownAtStart, OutageCase):
    db = {"pool_size": 2, "connect_timeout": 2, "socket": True}


class RestartTest(OutageCase):
    """A fresh squall per test, so each starts with the database up and an untouched pool."""

    db = {"pool_size": 2}

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.server = dbharness.db_server(self.get_database(), self.db, self.config)
        try:
            self.server.start()
        except BaseException:
            self.server.kill()
            raise
        self.addCleanup(self.server.stop)

    def warm(self):
        """Both pooled connections open and used."""
        paths = [("/c/sleep?s=0.2&tag=warm1",), ("/c/sleep?s=0.2&tag=warm2",)]
        for r in in_parallel(self.get, paths):
            self.assertEqual(r.status, 200, r)

    def assertAllSucceedSoonAfterStart(self, started):
        """A few seconds after the database came back every request succeeds again, on every
        pooled connection (none is left pointing at the old server)."""
        time.sleep(max(0.0, started + SETTLE - time.monotonic()))
        self.assertFullPoolUsable(2, max_seconds=None)   # a database just back may be slow
        for _ in range(4):
            self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})

    def test_queries_fail_with_503_while_the_database_is_down_and_recover_after(self):
        self.warm()
        self.throwaway.stop()
        for _ in range(3):
            elapsed, r = timed(self.get, "/c/quick?v=1")
            self.assertUnavailable(r)
            self.assertLess(elapsed, 2.0)
        self.assertResponse(self.get("/ping"), 200, "pong")
        self.throwaway.start()
        started = time.monotonic()
        self.assertRecovers(expected={"v": 2})
        self.assertAllSucceedSoonAfterStart(started)

    def test_restart_while_idle_costs_at_most_a_few_503s(self):
        self.warm()
        self.throwaway.stop()
        self.throwaway.start()
        started = time.monotonic()
        # The first query on a connection the restart left stale fails; that failure makes the
        # other connection check itself (ping) before its next query. So at most one 503 per
        # pooled connection, none once the pool has noticed.
        self.assertRecovers(expected={"v": 2}, max_unavailable=self.db["pool_size"])
        self.assertAllSucceedSoonAfterStart(started)

    def test_database_down_during_a_query_is_503_not_a_hang(self):
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=5&tag=down_mid_query")
        _, seen = poll(lambda: self.throwaway.processlist("SELECT SLEEP%down_mid_query%"), bool, 3)
        self.assertTrue(seen[-1], "the SLEEP never showed in the processlist")
        t0 = time.monotonic()
        self.throwaway.stop()
        r = sleeper.get()
        self.assertUnavailable(r)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.throwaway.start()
        self.assertRecovers(expected={"v": 2})


if __name__ == "__main__":
    harness.main()
