"""Pooled connections that the database ends, on a throwaway MariaDB of this file's own: one
killed (KILL <id>) in the middle of a query or a transaction, and idle ones closed by the server
after wait_timeout."""

import os
import time

import dbharness
import harness
from dbharness import in_parallel, poll, timed

TABLE = "t_killed_tx"


def setUpModule():
    db = dbharness.ThrowawayDB().start()
    dbharness.ThrowawayDbTestCase.throwaway = db
    db.sql("CREATE TABLE %s (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB" % TABLE)


def tearDownModule():
    dbharness.ThrowawayDbTestCase.throwaway.destroy()


class KilledConnectionTest(dbharness.ThrowawayDbTestCase):
    db = {"pool_size": 2}

    def stored(self, lo, hi):
        rows = self.throwaway.sql("SELECT id FROM %s WHERE id BETWEEN %d AND %d" % (TABLE, lo, hi))
        return [int(r[0]) for r in rows]

    def test_connection_killed_mid_query_fails_that_request_with_503(self):
        # The server maps a lost connection (errno 2013 here) to kind "unavailable": 503.
        tag = "killme_%d" % os.getpid()
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=5&tag=" + tag, 10)
        conn_id = self.throwaway.running_id("SELECT SLEEP%" + tag + "%")
        t0 = time.monotonic()
        self.throwaway.sql("KILL %d" % conn_id, root=True, database=False)
        r = sleeper.get(10)
        self.assertUnavailable(r)
        self.assertLess(time.monotonic() - t0, 3.0,
                        "the killed query's request did not end promptly")
        self.assertLog(lambda log: "GET /c/sleep?s=5&tag=" + tag in log,
                       "the failed request is not logged")
        # The pool is whole again: two queries at once, each on its own connection.
        self.assertFullPoolUsable(2)
        stats = self.wait_pool_idle()
        self.assertEqual(stats["size"], 2, stats)

    def test_connection_killed_inside_a_transaction_rolls_it_back(self):
        sleeper = harness.ThreadResult(self.post, "/d/tx-sleep?t=%s&id=100&s=5&how=db" % TABLE)
        conn_id = self.throwaway.running_id("SELECT SLEEP%")
        self.throwaway.sql("KILL %d" % conn_id, root=True, database=False)
        r = sleeper.get(10)
        self.assertUnavailable(r)
        self.assertEqual(self.stored(100, 101), [], "the transaction's first insert survived")
        self.assertFullPoolUsable(2)
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})
        self.wait_pool_idle()

    def test_killing_only_the_query_is_a_500_and_keeps_the_connection(self):
        # KILL QUERY leaves the connection alive: an ordinary query error (1317), so a 500.
        tag = "killquery_%d" % os.getpid()
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=5&tag=" + tag, 10)
        conn_id = self.throwaway.running_id("SELECT SLEEP%" + tag + "%")
        self.throwaway.sql("KILL QUERY %d" % conn_id, root=True, database=False)
        r = sleeper.get(10)
        self.assertServerError(r)
        self.assertLog(lambda log: "GET /c/sleep?s=5&tag=" + tag in log and "errno 1317" in log,
                       "the interrupted query is not logged with its errno")
        self.assertFullPoolUsable(2)
        ids = {row[0] for row in self.throwaway.sql(
            "SELECT ID FROM information_schema.processlist WHERE USER = 'squall'", root=True,
            database=False)}
        self.assertIn(str(conn_id), ids, "the connection whose query was killed was closed")


class IdlePastWaitTimeoutTest(dbharness.ThrowawayDbTestCase):
    db = {"pool_size": 2}

    @classmethod
    def setUpDatabase(cls, db):
        db.set_global("wait_timeout = 2")    # before squall opens its connections

    @classmethod
    def tearDownDatabase(cls, db):
        db.set_global("wait_timeout = 28800")

    def conn_ids(self):
        doc = {"sql": "SELECT CONNECTION_ID() AS id, @@wait_timeout AS wt, SLEEP(1) AS s",
               "params": []}
        rs = in_parallel(self.post, [("/sql", doc)] * 2)
        docs = [self.assertJson(r, 200) for r in rs]
        for d in docs:
            self.assertEqual(d["rows"][0]["wt"], 2, "the session did not get wait_timeout = 2")
        return {d["rows"][0]["id"] for d in docs}

    def test_queries_after_idling_past_wait_timeout_succeed(self):
        before = self.conn_ids()
        self.assertEqual(len(before), 2, "two queries at once should use both connections")
        time.sleep(3.0)
        elapsed, r = timed(self.get, "/c/quick?v=1")
        self.assertJson(r, 200, {"v": 2})
        self.assertLess(elapsed, 2.0)
        after = self.conn_ids()
        self.assertEqual(after & before, set(),
                         "the server closed those connections; new ones serve")
        self.assertFullPoolUsable(2)

    def test_repeated_idle_periods_never_fail_a_request(self):
        for _ in range(2):
            time.sleep(2.5)
            rs = in_parallel(self.get, [("/c/quick?v=5",)] * 3)
            for r in rs:
                self.assertJson(r, 200, {"v": 6})


class PartialPoolTest(dbharness.ThrowawayDbTestCase):
    """One of the two connections cannot be opened (the account may hold one connection only):
    the healthy one must serve every request instead of requests failing on the broken one."""

    db = {"pool_size": 2}
    config = {"workers": 1}

    @classmethod
    def setUpDatabase(cls, db):
        db.sql("ALTER USER 'squall'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 1", root=True,
               database=False)

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("ALTER USER 'squall'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 0", root=True,
               database=False)

    def test_requests_use_the_healthy_connection_while_the_other_cannot_connect(self):
        def count():
            return self.throwaway.sql("SELECT COUNT(*) FROM information_schema.processlist "
                                      "WHERE USER = 'squall'", root=True, database=False)

        _, seen = poll(count, lambda rows: rows == [["1"]], 5)
        self.assertEqual(seen[-1], [["1"]], "squall should hold exactly one connection")
        time.sleep(0.5)     # the other thread is in its reconnect backoff now
        statuses = []
        for _ in range(20):
            statuses.append(self.get("/c/quick?v=1").status)
            time.sleep(0.05)
        self.assertEqual(statuses, [200] * 20, "requests failed although a connection was idle")


if __name__ == "__main__":
    harness.main()
