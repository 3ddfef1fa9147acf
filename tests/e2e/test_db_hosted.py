"""No database threads (db.threads = 0): each worker drives its own share of the connections on its
own loop, and results reach the requests by a direct call instead of a wake-up. The behaviours
the threaded pool is tested for hold here too (the same test classes, run again in this mode);
what is new is checked on top: several workers each with their own connections, their per-worker
figures and limits, and a drain that ends each worker's pool with the worker."""

import signal
import time

import dbharness
import harness
import test_db_concurrency
import test_db_engine
import test_db_lifecycle
import test_db_network
import test_db_shutdown
import test_db_transactions

HOSTED = {"threads": 0}


def setUpModule():
    test_db_shutdown.setUpModule()


def tearDownModule():
    test_db_shutdown.tearDownModule()


# ---- what the threaded pool is tested for, on one worker's own pool --------------------------
# The same classes with the same settings, threads = 0 instead; one worker where the test reads
# the pool's figures (db.stats() is the answering worker's pool).

def hosted_from(base):
    return dict(base.db, **HOSTED)


class HostedTransactionTest(test_db_transactions.TransactionTest):
    db = hosted_from(test_db_transactions.TransactionTest)


class HostedPoolConcurrencyTest(test_db_concurrency.PoolConcurrencyTest):
    db = hosted_from(test_db_concurrency.PoolConcurrencyTest)
    config = {"workers": 1}


class HostedWorkerNotBlockedTest(test_db_concurrency.WorkerNotBlockedTest):
    db = hosted_from(test_db_concurrency.WorkerNotBlockedTest)


class HostedCompletionBatchingTest(test_db_concurrency.CompletionBatchingTest):
    db = hosted_from(test_db_concurrency.CompletionBatchingTest)


class HostedKillQueryTest(test_db_engine.KillQueryOnOneThreadTest):
    db = hosted_from(test_db_engine.KillQueryOnOneThreadTest)
    config = {"workers": 1}


class HostedLostConnectionTest(test_db_engine.LostConnectionOnOneThreadTest):
    db = hosted_from(test_db_engine.LostConnectionOnOneThreadTest)
    config = {"workers": 1}


class HostedMaxLifetimeTest(test_db_lifecycle.MaxLifetimeTest):
    db = hosted_from(test_db_lifecycle.MaxLifetimeTest)
    config = {"workers": 1}


class HostedIdleShrinkTest(test_db_lifecycle.IdleShrinkTest):
    db = hosted_from(test_db_lifecycle.IdleShrinkTest)
    config = {"workers": 1}


class HostedInitSqlTest(test_db_lifecycle.InitSqlTest):
    db = hosted_from(test_db_lifecycle.InitSqlTest)
    config = {"workers": 1}


class HostedBlackholeTest(test_db_network.BlackholeTest):
    """The deadlines hold with the watchdog and the KILL side connection on the worker's loop."""
    db = hosted_from(test_db_network.BlackholeTest)
    config = {"workers": 1}


class HostedAbandonedKillTest(test_db_network.AbandonedKillTest):
    db = hosted_from(test_db_network.AbandonedKillTest)
    config = {"workers": 1}


class HostedForcedStopTest(test_db_shutdown.ForcedStopWithQueriesOutTest):
    """A forced stop cancels each worker's own pool (main cancels only a shared one)."""
    db_config = dict(test_db_shutdown.ForcedStopWithQueriesOutTest.db_config, **HOSTED)

    def test_forced_stop_while_a_transaction_waits_outside_the_database_ends_it_uncommitted(self):
        # The task sleeps on a timer holding its pinned connection, with no job out: the forced
        # stop abandons it while cancelling the worker's own pool, and nothing of it is committed.
        self.start(shutdown_timeout=1)
        table = test_db_shutdown.TABLE
        dirty = ("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SELECT COUNT(*) FROM %s "
                 "WHERE id = 310" % table)   # sees the uncommitted first insert
        self.in_background("POST", "/d/tx-sleep?t=%s&id=310&s=%d&how=timer" % (table, test_db_shutdown.SLEEP),
                           None, ready=lambda: self.db.sql(dirty) == [["1"]])
        self.server.signal(signal.SIGTERM)
        self.server.expect_clean_exit(6)
        # MariaDB rolls back a closed connection's transaction as it notices the close
        _, seen = dbharness.poll(lambda: self.db.sql(dirty), lambda rows: rows == [["0"]], 5.0, 0.05)
        self.assertEqual(seen[-1], [["0"]], "the transaction's insert outlived the stop")


# ---- several workers, each with its own connections -------------------------------------------

class HostedWorkersTest(test_db_engine.RowsBurst, dbharness.DbServerTestCase):
    # min_idle = 8: each worker keeps its 4 open whatever ran before
    db = dict(HOSTED, pool_size=8, min_idle=8, queue_timeout=20)
    config = {"workers": 2}

    def test_concurrent_requests_on_two_workers_get_their_own_rows_over_all_8_connections(self):
        elapsed, conns = self.burst()
        # Each worker has 4 of the 8; 40 requests in flight at once reach both workers.
        self.assertEqual(len(conns), 8, "the two workers' 4 + 4 connections were not all used: %r"
                         % sorted(conns))
        # One connection at a time per worker would take 250 x 0.02 = 5 s; 4 at once about 1.3 s.
        self.assertLess(elapsed, 3.0, "a worker's connections did not run their statements at once")

    def test_stats_are_the_answering_workers_own_share(self):
        _, seen = dbharness.poll(self.pool_stats, lambda s: s["open"] == 4, 5)
        self.assertEqual((seen[-1]["size"], seen[-1]["open"]), (4, 4), seen[-1])


class HostedDrainTest(dbharness.DbServerTestCase):
    # min_idle = 4: both workers hold open connections (polled handles on their loops), so
    # neither loop can end, nor the process exit, unless each worker's pool is closed.
    db = dict(HOSTED, pool_size=4, min_idle=4)
    config = {"workers": 2}

    def test_a_drain_waits_for_queries_then_each_workers_pool_ends_with_it(self):
        tag = "hosted_drain_%d" % time.monotonic_ns()
        slow = harness.ThreadResult(self.get, "/c/sleep?s=1&tag=" + tag, 10)
        _, seen = dbharness.poll(lambda: self.database.processlist("%" + tag + "%"), bool, 5.0, 0.05)
        self.assertTrue(seen[-1], "the request's statement never ran")
        t0 = time.monotonic()
        self.server.signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(self.server.running(), "the drain did not wait for the running query")
        self.assertJson(slow.get(), 200, {"slept": 0, "tag": tag})
        self.server.expect_clean_exit(10)
        self.assertLess(time.monotonic() - t0, 5, "the drain did not end once the query came back")


if __name__ == "__main__":
    harness.main()
