"""One database thread driving many connections (db.threads = 1, the second-generation engine's
event loop over non-blocking MariaDB calls), on the shared database: many requests at once each
get their own rows; query_timeout's KILL QUERY hits only the statement past its limit while its
neighbours on the same thread run on; a connection lost mid-query fails only its own request
and is replaced."""

import os
import time

import dbharness
import harness
from dbharness import in_parallel, poll, timed, unique_name

TABLE = unique_name("engine_rows")
N_REQUESTS = 500


class RowsBurst:
    """A table of N_REQUESTS rows, and N_REQUESTS requests at once each reading its own row with
    SLEEP(0.02) in the statement (so that requests hold their connections at once)."""

    @classmethod
    def setUpDatabase(cls, db):
        values = ", ".join("(%d, 'row-%d')" % (i, i * 13) for i in range(1, N_REQUESTS + 1))
        db.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, "
               "val VARCHAR(20) NOT NULL) ENGINE=InnoDB; INSERT INTO {t} VALUES {v}"
               .format(t=TABLE, v=values))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    def burst(self):
        """Checks every answer; returns the seconds it took and the connection ids used."""
        def one(i):
            return harness.request(self.port, "GET", "/e/row?t=%s&id=%d&s=0.02" % (TABLE, i),
                                   timeout=30)

        elapsed, responses = timed(in_parallel, one, [(i,) for i in range(1, N_REQUESTS + 1)], 40)
        conns = set()
        for i, r in enumerate(responses, 1):
            doc = self.assertJson(r, 200)
            self.assertEqual((doc["id"], doc["val"], doc["echo"]), (i, "row-%d" % (i * 13), i), doc)
            conns.add(doc["conn"])
        return elapsed, conns


class ManyConnectionsOneThreadTest(RowsBurst, dbharness.DbServerTestCase):
    # queue_timeout is generous: this checks correctness under concurrency, not latency.
    db = {"threads": 1, "pool_size": 8, "queue_timeout": 20}

    def test_500_concurrent_requests_on_8_connections_of_one_thread_get_their_own_rows(self):
        before = self.pool_stats()
        self.assertEqual((before["size"], before["busy"]), (8, 0), before)
        elapsed, conns = self.burst()
        self.assertEqual(len(conns), 8, "500 requests at once should use all 8 connections: %r"
                         % sorted(conns))
        # One connection at a time would take 500 x 0.02 = 10 s; 8 at once about 1.3 s.
        self.assertLess(elapsed, 6.0, "the 8 connections did not run their statements at once")
        self.wait_pool_idle()
        after = self.pool_stats()
        self.assertEqual((after["size"], after["open"], after["waiting"]), (8, 8, 0), after)
        self.assertEqual(after["queries"] - before["queries"], N_REQUESTS, (before, after))
        self.assertEqual((after["errors"], after["exhausted"], after["timeouts"]),
                         (before["errors"], before["exhausted"], before["timeouts"]), after)


class KillQueryOnOneThreadTest(dbharness.DbServerTestCase):
    db = {"threads": 1, "pool_size": 4, "query_timeout": 1}

    def test_kill_query_hits_only_the_statement_past_query_timeout(self):
        tag = "victim_%d" % os.getpid()
        before = self.pool_stats()
        # Neighbours on the same thread's other connections: SLEEP(0.5) back to back on two (so
        # one of them runs across the moment of the kill), quick queries on the third.
        nappers = dbharness.Load(lambda: self.get("/c/sleep?s=0.5&tag=neighbour"), 2)
        quick = dbharness.Load(lambda: self.get("/c/quick?v=7"), 1)
        time.sleep(0.2)
        elapsed, r = timed(self.post, "/sql", {"sql": "SELECT SLEEP(5) AS s, '%s' AS tag" % tag,
                                               "params": [], "catch": True}, 10)
        time.sleep(0.6)        # the neighbours go on after the kill too
        naps, quicks = nappers.stop(), quick.stop()
        err = self.assertJson(r, 200).get("error")
        self.assertIsNotNone(err, "SLEEP(5) with query_timeout = 1 succeeded: %r" % r.json())
        self.assertEqual(err["kind"], "timeout", err)
        self.assertGreater(elapsed, 0.9, "failed before query_timeout")
        self.assertLess(elapsed, 1.5, "query_timeout = 1 but the request took %.2fs" % elapsed)
        # KILL QUERY is best effort on a side connection: it may land just after the answer.
        _, seen = poll(lambda: self.database.processlist("%" + tag + "%"), lambda rows: not rows, 1)
        self.assertEqual(seen[-1], [], "the timed-out statement still runs on the server: "
                         "KILL QUERY missed it")
        self.assertGreaterEqual(len(naps), 4, naps)
        for start, secs, resp in naps:
            self.assertJson(resp, 200, {"slept": 0, "tag": "neighbour"})
            self.assertLess(secs, 0.9, "a neighbour's SLEEP(0.5) took %.2fs" % secs)
        self.assertGreaterEqual(len(quicks), 5, "quick queries stalled during the kill: %r" % quicks)
        for start, secs, resp in quicks:
            self.assertJson(resp, 200, {"v": 8})
            self.assertLess(secs, 0.5, "a quick query took %.2fs next to the killed one" % secs)
        after = self.pool_stats()
        self.assertEqual(after["timeouts"] - before["timeouts"], 1, (before, after))
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})


class LostConnectionOnOneThreadTest(dbharness.DbServerTestCase):
    db = {"threads": 1, "pool_size": 4}

    def test_a_connection_killed_mid_query_fails_only_its_request_and_is_replaced(self):
        tag = "lost_%d" % os.getpid()
        self.assertFullPoolUsable(4)
        neighbours = dbharness.Load(lambda: self.get("/c/sleep?s=0.2&tag=beside_lost"), 2)
        victim = harness.ThreadResult(self.get, "/c/sleep?s=5&tag=" + tag, 10)
        conn_id = self.database.running_id("SELECT SLEEP%" + tag + "%")
        time.sleep(0.3)
        t0 = time.monotonic()
        self.database.kill(conn_id)
        r = victim.get()
        self.assertUnavailable(r)
        self.assertLess(time.monotonic() - t0, 1.0, "the lost connection's request did not end "
                        "promptly")
        time.sleep(0.5)
        calls = neighbours.stop()
        for start, secs, resp in calls:
            self.assertJson(resp, 200, {"slept": 0, "tag": "beside_lost"})
            self.assertLess(secs, 0.7, "a neighbour waited %.2fs" % secs)
        self.assertGreaterEqual(len(calls), 6, calls)
        self.assertNotIn(conn_id, self.database.connection_ids())
        # Back to full size: four SLEEP(1) at once run at once, and all four are connected.
        self.assertFullPoolUsable(4)
        _, seen = poll(self.pool_stats, lambda s: s["open"] == 4, 5)
        self.assertEqual(seen[-1]["open"], 4, seen[-1])


if __name__ == "__main__":
    harness.main()
