"""Bounded waiting, on a throwaway MariaDB of this file's own: a query past query_timeout is killed
on the server and fails in about that time; requests past max_queue, or waiting longer than
queue_timeout for a connection, get 503 at once instead of hanging."""

import os

import dbharness
import harness
from dbharness import in_parallel, poll, timed


def setUpModule():
    dbharness.ThrowawayDbTestCase.throwaway = dbharness.ThrowawayDB().start()


def tearDownModule():
    dbharness.ThrowawayDbTestCase.throwaway.destroy()


class QueryTimeoutTest(dbharness.ThrowawayDbTestCase):
    # 1.5 s, not 1: assertFullPoolUsable runs SLEEP(1), which must stay clear of the limit.
    db = {"pool_size": 2, "query_timeout": 1.5}

    def test_query_past_query_timeout_is_killed_and_is_a_500(self):
        tag = "timeout_%d" % os.getpid()
        elapsed, r = timed(self.get, "/c/sleep?s=3&tag=" + tag)
        self.assertServerError(r)
        self.assertGreater(elapsed, 1.4, "failed before query_timeout")
        self.assertLess(elapsed, 2.5, "query_timeout = 1.5 but the request took %.2fs" % elapsed)
        self.assertLog(lambda log: any("GET /c/sleep?s=3&tag=" + tag in line and "timed out" in line
                                       for line in log.splitlines()),
                       "no log line saying the query timed out")
        # KILL QUERY ran on the server: the statement is gone from the processlist.
        self.assertEqual(self.throwaway.processlist("%" + tag + "%"), [],
                         "the timed-out query still runs on the server")
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})

    def test_timeout_error_has_kind_timeout_and_errno_1969(self):
        tag = "timeout_obj_%d" % os.getpid()
        doc = self.sql("SELECT SLEEP(3) AS s, '%s' AS tag" % tag, catch=True)
        err = doc["error"]
        self.assertEqual((err["kind"], err["code"]), ("timeout", 1969), err)
        self.assertIn("timed out", err["message"])
        self.assertFalse(err["unavailable"], "a timeout is not 'unavailable'")
        self.assertEqual(self.throwaway.processlist("%" + tag + "%"), [])

    def test_query_under_query_timeout_succeeds(self):
        elapsed, r = timed(self.get, "/c/sleep?s=0.5&tag=short")
        self.assertJson(r, 200, {"slept": 0, "tag": "short"})

    def test_connection_is_reused_after_a_timeout(self):
        for i in range(3):
            self.assertServerError(self.get("/c/sleep?s=2&tag=again%d" % i))
        self.assertFullPoolUsable(2)
        stats = self.wait_pool_idle()
        self.assertGreaterEqual(stats["timeouts"], 3, stats)
        self.assertEqual(stats["errors"], 0, "timeouts are counted apart from query errors")


def hold_the_connection(case, tag, seconds):
    """Start a request that keeps the pool's only connection in SELECT SLEEP(seconds); returns
    its ThreadResult once the statement runs on the server."""
    sleeper = harness.ThreadResult(case.get, "/c/sleep?s=%g&tag=%s" % (seconds, tag), seconds + 8)
    _, seen = poll(lambda: case.throwaway.processlist("SELECT SLEEP%" + tag + "%"), bool, 3, 0.05)
    case.assertTrue(seen[-1], "the holding SLEEP never showed in the processlist")
    return sleeper


# The timing bounds below leave about a second for a loaded machine (ctest runs the plain and the
# ASan copy side by side); the holding SLEEP lasts longer still, so "refused or expired" and
# "waited for the holder" stay apart.

class MaxQueueTest(dbharness.ThrowawayDbTestCase):
    db = {"pool_size": 1, "max_queue": 2, "queue_timeout": 5}
    config = {"workers": 1}

    def test_requests_past_max_queue_get_503_at_once(self):
        sleeper = hold_the_connection(self, "holder", 2.5)
        results = in_parallel(lambda: timed(self.get, "/c/quick?v=1"), [()] * 5)
        ok = [(e, r) for e, r in results if r.status == 200]
        refused = [(e, r) for e, r in results if r.status != 200]
        self.assertEqual(len(ok), 2, "max_queue = 2: two wait their turn (%r)" % results)
        self.assertEqual(len(refused), 3, results)
        for e, r in refused:
            self.assertUnavailable(r)
            self.assertLess(e, 1.0, "a refused request should not wait (%.2fs)" % e)
        for e, r in ok:
            self.assertJson(r, 200, {"v": 2})
        self.assertJson(sleeper.get(), 200, {"slept": 0, "tag": "holder"})
        self.assertLog(lambda log: "pool exhausted" in log, "no log line for the refused requests")
        self.assertEqual(self.wait_pool_idle()["waiting"], 0)


class QueueTimeoutTest(dbharness.ThrowawayDbTestCase):
    db = {"pool_size": 1, "max_queue": 1024, "queue_timeout": 0.3}
    config = {"workers": 1}

    def test_requests_waiting_past_queue_timeout_get_503(self):
        sleeper = hold_the_connection(self, "holder", 2.5)
        results = in_parallel(lambda: timed(self.get, "/c/quick?v=1"), [()] * 5)
        for e, r in results:
            self.assertUnavailable(r)
            self.assertGreater(e, 0.25, "503 before queue_timeout")
            self.assertLess(e, 1.5, "queue_timeout = 0.3 but the request waited %.2fs" % e)
        self.assertJson(sleeper.get(), 200, {"slept": 0, "tag": "holder"})
        self.assertLog(lambda log: "no database connection free within 0.3s" in log,
                       "the 503 is not logged with its cause")
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})

    def test_a_transaction_waiting_past_queue_timeout_gets_503(self):
        sleeper = hold_the_connection(self, "holder2", 2.5)
        elapsed, r = timed(self.get, "/tx/in-transaction")
        self.assertUnavailable(r)
        self.assertLess(elapsed, 1.5)
        elapsed, r = timed(self.get, "/tx/after-end")
        self.assertUnavailable(r)
        self.assertLess(elapsed, 1.5)
        self.assertJson(sleeper.get(), 200, {"slept": 0, "tag": "holder2"})
        self.assertEqual(self.wait_pool_idle()["busy"], 0)


if __name__ == "__main__":
    harness.main()
