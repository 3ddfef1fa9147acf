"""Connections coming and going by the pool's own rules (the second-generation engine), on the
shared database: max_lifetime replaces connections under load without failing a query (nor
breaking a transaction); idle_timeout closes idle ones down to min_idle and a burst opens them
again; init_sql runs on every new connection, including the ones that replace a lost one."""

import os
import time

import dbharness
import harness
from dbharness import in_parallel, poll, timed

LOAD_SECONDS = 4.0


class MaxLifetimeTest(dbharness.DbServerTestCase):
    db = {"threads": 1, "pool_size": 4, "max_lifetime": 1, "init_sql": "SET @squall_init = 42"}

    def test_connections_are_recycled_under_load_without_a_failed_query(self):
        queries = dbharness.Load(lambda: self.get("/e/conn"), 3)
        transactions = dbharness.Load(lambda: self.get("/e/tx-conn?s=0.3"), 1)
        time.sleep(LOAD_SECONDS)
        calls, txs = queries.stop(), transactions.stop()
        failed = [(start, resp) for start, _, resp in calls + txs if resp.status != 200]
        self.assertEqual(failed, [], "recycling failed requests\n%s" % self.server.log()[-3000:])
        spans = {}      # connection id -> (first seen, last seen)
        for start, _, resp in calls:
            doc = resp.json()
            self.assertEqual(doc["init"], 42, "a connection without init_sql: %r" % doc)
            first, last = spans.get(doc["id"], (start, start))
            spans[doc["id"]] = (min(first, start), max(last, start))
        for start, _, resp in txs:
            doc = resp.json()
            self.assertEqual(doc["first"], doc["second"],
                             "a transaction changed connections halfway: %r" % doc)
            self.assertEqual(doc["in_tx"], 1, doc)
        self.assertGreater(len(calls), 50, "too little load to show anything")
        early = {cid for cid, (first, _) in spans.items() if first < 1.0}
        late = {cid for cid, (_, last) in spans.items() if last > LOAD_SECONDS - 1.0}
        self.assertTrue(early and late, spans)
        self.assertEqual(early & late, set(), "connections outlived max_lifetime = 1 by seconds: "
                         "%r" % spans)
        for cid, (first, last) in spans.items():
            self.assertLess(last - first, 1.0 + 1.0, "connection %d served for %.1fs"
                            % (cid, last - first))
        # The replaced connections were closed, not leaked.
        self.assertEqual(early & self.database.connection_ids(), set(),
                         "replaced connections are still open on the server")
        self.assertLessEqual(self.pool_stats()["open"], 4)


class IdleShrinkTest(dbharness.DbServerTestCase):
    db = {"threads": 1, "pool_size": 4, "idle_timeout": 1, "min_idle": 1}

    def burst(self, seconds):
        """Four /e/conn at once, each holding a connection for `seconds`; their connection ids."""
        elapsed, rs = timed(in_parallel, self.get,
                            [("/e/conn?s=%g&tag=burst%d" % (seconds, i),) for i in range(4)])
        ids = {self.assertJson(r, 200)["id"] for r in rs}
        self.assertEqual(len(ids), 4, "four requests at once should hold four connections")
        return elapsed, ids

    def test_idle_connections_close_down_to_min_idle_and_a_burst_reopens_them(self):
        _, ids = self.burst(0.3)
        self.assertEqual(self.pool_stats()["open"], 4)
        waited, seen = poll(self.pool_stats, lambda s: s["open"] == 1, 5, 0.2)
        self.assertEqual(seen[-1]["open"], 1, "idle_timeout = 1, min_idle = 1: %r" % seen[-1])
        self.assertGreater(waited, 0.5, "connections closed before idle_timeout")
        _, still = poll(lambda: ids & self.database.connection_ids(), lambda s: len(s) <= 1, 1)
        self.assertLessEqual(len(still[-1]), 1, "squall says closed but the server still has "
                             "them: %r" % still[-1])
        time.sleep(1.5)
        self.assertEqual(self.pool_stats()["open"], 1, "below min_idle, or reopened for nothing")
        elapsed, _ = self.burst(1)
        self.assertLess(elapsed, 1.8, "four SLEEP(1) did not run at once on a regrown pool")
        stats = self.pool_stats()
        self.assertGreater(stats["open"], 1, stats)
        self.assertEqual((stats["size"], stats["errors"], stats["exhausted"]), (4, 0, 0), stats)


class InitSqlTest(dbharness.DbServerTestCase):
    # In order: the second statement reads what the first set.
    db = {"threads": 1, "pool_size": 2,
          "init_sql": ["SET @squall_init_a = 41", "SET @squall_init = @squall_init_a + 1",
                       "SET time_zone = '+05:00'"]}

    def sessions(self):
        """Both pooled connections at once: {id: (init, tz)}."""
        rs = in_parallel(self.get, [("/e/conn?s=0.5&tag=init%d" % i,) for i in range(2)])
        docs = [self.assertJson(r, 200) for r in rs]
        return {d["id"]: (d["init"], d["tz"]) for d in docs}

    def assertInitialized(self, sessions):
        self.assertEqual(len(sessions), 2, sessions)
        for cid, session in sessions.items():
            self.assertEqual(session, (42, "+05:00"), "connection %d missed init_sql" % cid)

    def assertServesAgain(self, old_ids):
        """After the kills: a few 503s at most (one per connection), then sessions initialized
        again on new connections."""
        _, seen = poll(lambda: self.get("/e/conn"), lambda r: r.status == 200, 5, 0.1)
        for r in seen[:-1]:
            self.assertUnavailable(r)
        self.assertLessEqual(len(seen) - 1, 2, seen)
        sessions = self.sessions()
        self.assertInitialized(sessions)
        self.assertEqual(set(sessions) & old_ids, set(), "killed connections still serve")

    def test_init_sql_runs_on_every_connection(self):
        self.assertInitialized(self.sessions())

    def test_init_sql_runs_again_on_the_connections_that_replace_killed_ones(self):
        old = self.sessions()
        self.assertInitialized(old)
        for cid in old:
            self.database.kill(cid)
        self.assertServesAgain(set(old))

    def test_init_sql_runs_again_after_a_connection_is_lost_mid_query(self):
        tag = "init_lost_%d" % os.getpid()
        victim = harness.ThreadResult(self.get, "/e/conn?s=5&tag=" + tag, 10)
        cid = self.database.running_id("SELECT CONNECTION_ID()%" + tag + "%")
        self.database.kill(cid)
        self.assertUnavailable(victim.get())
        self.assertServesAgain({cid})


class InitSqlStringTest(dbharness.DbServerTestCase):
    db = {"threads": 1, "pool_size": 2, "init_sql": "SET @squall_init = 42"}

    def test_a_single_init_sql_string_runs_on_every_connection(self):
        rs = in_parallel(self.get, [("/e/conn?s=0.5&tag=one%d" % i,) for i in range(2)])
        docs = [self.assertJson(r, 200) for r in rs]
        self.assertEqual(len({d["id"] for d in docs}), 2, docs)
        self.assertEqual([d["init"] for d in docs], [42, 42], docs)


if __name__ == "__main__":
    harness.main()
