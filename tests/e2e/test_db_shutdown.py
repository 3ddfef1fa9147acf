"""A forced stop (the second signal, or shutdown_timeout running out) while queries run with no
query_timeout: the server must not wait for the database to answer them. Before, a worker ended
only once every query of its requests had come back, so SELECT SLEEP(60) with query_timeout = 0
held the exit for a minute."""

import signal
import threading
import time

import dbharness
import harness

TABLE = dbharness.unique_name("shutdown")
SLEEP = 60    # far beyond every bound below: only cancelling the query lets the server exit


def setUpModule():
    db = dbharness.shared_db()
    db.sql("CREATE TABLE IF NOT EXISTS %s (id INT PRIMARY KEY, balance BIGINT NOT NULL) "
           "ENGINE=InnoDB" % TABLE)


def tearDownModule():
    dbharness.shared_db().sql("DROP TABLE IF EXISTS %s" % TABLE)


class ForcedStopWithQueriesOutTest(harness.ServerTestCase):
    db_config = {"query_timeout": 0, "pool_size": 2}

    def start(self, shutdown_timeout):
        self.db = dbharness.shared_db()
        self.server = dbharness.db_server(self.db, self.db_config, {"shutdown_timeout": shutdown_timeout})
        self.server.start()
        self.addCleanup(self.server.kill)

    def in_background(self, method, path, tag, ready=None):
        """Sends the request from a thread (its answer does not matter: a forced stop may close
        the connection without one) and waits until its statement runs in the database, or until
        ready() is true."""
        def send():
            try:
                self.server.request(method, path, timeout=SLEEP + 10)
            except OSError:
                pass
        threading.Thread(target=send, daemon=True).start()
        # At least one: the other copy of this file (plain / ASan) may run the same statement.
        ready = ready or (lambda: bool(self.db.processlist("%" + tag + "%")))
        _, seen = dbharness.poll(ready, bool, 5.0, 0.05)
        self.assertTrue(seen[-1], "the request's statement never ran\n" + self.server.log()[-2000:])

    def test_second_signal_ends_a_query_that_has_no_timeout(self):
        self.start(shutdown_timeout=30)
        tag = "stopme_%d" % time.monotonic_ns()
        self.in_background("GET", "/c/sleep?s=%d&tag=%s" % (SLEEP, tag), tag)
        self.server.signal(signal.SIGTERM)
        time.sleep(0.3)                        # the drain has begun and waits on the query
        self.assertTrue(self.server.running(), "the drain did not wait for the running request")
        t0 = time.monotonic()
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(5)
        self.assertLess(time.monotonic() - t0, 5)

    def test_shutdown_timeout_ends_a_query_that_has_no_timeout(self):
        self.start(shutdown_timeout=1)
        tag = "deadline_%d" % time.monotonic_ns()
        self.in_background("GET", "/c/sleep?s=%d&tag=%s" % (SLEEP, tag), tag)
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(6)       # 1 s of drain, then the forced stop

    def test_forced_stop_inside_a_transaction_rolls_it_back(self):
        # The request holds a pinned connection and sleeps in the database between two inserts;
        # its rollback is submitted after the pool was cancelled and must still complete.
        self.start(shutdown_timeout=1)
        self.in_background("POST", "/d/tx-sleep?t=%s&id=300&s=%d&how=db" % (TABLE, SLEEP),
                           "SLEEP%")
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(6)
        rows = self.db.sql("SELECT id FROM %s WHERE id BETWEEN 300 AND 301" % TABLE)
        self.assertEqual(rows, [], "the transaction's first insert survived the forced stop")


if __name__ == "__main__":
    harness.main()
