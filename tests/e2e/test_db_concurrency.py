"""Many requests sharing a small pool get their own results; squall.spawn runs queries at the same
time; a request waiting on the database does not hold up its worker."""

import time

import dbharness
import harness
from dbharness import in_parallel, timed, unique_name

TABLE = unique_name("conc")
ACCOUNTS = unique_name("concacct")
N_REQUESTS = 200


class PoolConcurrencyTest(dbharness.DbServerTestCase):
    db = {"pool_size": 4}

    @classmethod
    def setUpDatabase(cls, db):
        values = ", ".join("(%d, 'v%d', 0)" % (i, i * 7) for i in range(1, N_REQUESTS + 1))
        db.sql(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, "
            "val VARCHAR(20) NOT NULL, hits INT NOT NULL) ENGINE=InnoDB; "
            "INSERT INTO {t} VALUES {v};"
            "DROP TABLE IF EXISTS {a}; CREATE TABLE {a} (id INT PRIMARY KEY, "
            "balance BIGINT NOT NULL) ENGINE=InnoDB".format(t=TABLE, v=values, a=ACCOUNTS))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s" % (TABLE, ACCOUNTS))

    def test_200_concurrent_requests_with_5_queries_each_get_their_own_results(self):
        before = self.stats()["queries"]

        def one(i):
            return harness.request(self.port, "GET", "/c/five?t=%s&id=%d" % (TABLE, i), timeout=30)

        responses = in_parallel(one, [(i,) for i in range(1, N_REQUESTS + 1)])
        for i, r in enumerate(responses, 1):
            self.assertJson(r, 200, {"id": i, "val": "v%d" % (i * 7), "echo": i,
                                     "tag": "req-%d" % i, "triple": 3 * i, "affected": 1})
        self.assertEqual(self.database.sql("SELECT COUNT(*), MIN(hits), MAX(hits) FROM %s" % TABLE),
                         [[str(N_REQUESTS), "1", "1"]], "every request updated its own row once")
        stats = self.stats()
        self.assertEqual((stats["size"], stats["busy"], stats["waiting"]), (4, 0, 0), stats)
        self.assertGreaterEqual(stats["queries"] - before, 5 * N_REQUESTS, stats)

    def test_concurrent_transfers_keep_the_total(self):
        self.database.sql("INSERT INTO %s VALUES (1, 1000), (2, 0), (3, 500), (4, 0)" % ACCOUNTS)

        def transfer(src, dst):
            return harness.request(self.port, "POST", "/transfer?t=%s&from=%d&to=%d&amount=1"
                                   % (ACCOUNTS, src, dst), timeout=30)

        jobs = [(1, 2)] * 60 + [(3, 4)] * 40
        for r in in_parallel(transfer, jobs):
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json()["ok"], r)
        rows = self.database.sql("SELECT id, balance FROM %s ORDER BY id" % ACCOUNTS)
        self.assertEqual(rows, [["1", "940"], ["2", "60"], ["3", "460"], ["4", "40"]])

    def test_spawned_queries_run_concurrently(self):
        # One after the other would take 2 s; the bound leaves room for a loaded machine.
        elapsed, r = timed(self.get, "/c/spawn-two?s=1")
        self.assertJson(r, 200, {"labels": ["a", "b"], "slept": [0, 0]})
        self.assertLess(elapsed, 1.8, "two SLEEP(1) in spawned tasks ran one after the other")

    def test_task_wait_re_raises_the_spawned_tasks_error(self):
        doc = self.assertJson(self.get("/c/spawn-error"), 200)
        self.assertFalse(doc["ok"])
        self.assertEqual(doc["err"]["code"], 1146, doc)
        self.assertEqual(doc["err"]["kind"], "query", doc)
        self.assertTrue(doc["err"]["is_error"], doc)
        self.assertIn("t_no_such_table_anywhere", doc["err"]["message"])

    def test_uncaught_spawned_error_is_a_500_with_the_error_logged(self):
        self.assertServerError(self.get("/c/spawn-error", uncaught=1))
        self.assertLog(lambda log: "GET /c/spawn-error" in log
                       and "t_no_such_table_anywhere" in log,
                       "the spawned task's error is not in the log")

    def test_stats_count_queries_and_errors(self):
        before = self.stats()
        self.assertEqual(set(before), set(dbharness.ENGINE_STATS))
        self.sql("SELECT 1 AS one")
        self.sql("SELECT * FROM t_no_such_table_anywhere", catch=True)
        after = self.stats()
        self.assertEqual(after["queries"] - before["queries"], 2, (before, after))
        self.assertEqual(after["errors"] - before["errors"], 1, (before, after))
        # A query error is an error, not a refusal or a timeout.
        self.assertEqual((after["exhausted"], after["timeouts"]),
                         (before["exhausted"], before["timeouts"]), (before, after))
        self.assertGreaterEqual(after["query_time"], before["query_time"])
        self.assertGreaterEqual(after["wait_time"], before["wait_time"])

    def test_spawn_passes_arguments_and_returns_results(self):
        self.assertJson(self.get("/c/spawn-args"), 200, {"sum": 5, "text": "2+3"})


class WorkerNotBlockedTest(dbharness.DbServerTestCase):
    db = {"pool_size": 4}
    config = {"workers": 1}

    def test_other_requests_are_answered_while_one_waits_on_the_database(self):
        started = time.monotonic()
        sleeper = harness.ThreadResult(self.get, "/c/sleep?s=2&tag=worker_not_blocked")
        time.sleep(0.2)
        for path in ("/ping", "/c/quick?v=41"):
            elapsed, r = timed(self.get, path)
            self.assertEqual(r.status, 200, r)
            self.assertLess(elapsed, 1.0, "%s waited for the sleeping request" % path)
            self.assertLess(time.monotonic() - started, 1.8, "answered only after the sleep ended")
        self.assertEqual(self.get("/c/quick?v=41").json(), {"v": 42})
        r = sleeper.get()
        self.assertJson(r, 200, {"slept": 0, "tag": "worker_not_blocked"})
        self.assertGreaterEqual(time.monotonic() - started, 1.95)

    def test_pool_size_sleeps_overlap_on_one_worker(self):
        paths = [("/c/sleep?s=1&tag=x%d" % i,) for i in range(4)]
        elapsed, responses = timed(in_parallel, self.get, paths)
        for i, r in enumerate(responses):
            self.assertJson(r, 200, {"slept": 0, "tag": "x%d" % i})
        self.assertLess(elapsed, 1.8, "four SLEEP(1) on a pool of 4 did not overlap")


class CompletionBatchingTest(dbharness.DbServerTestCase):
    """A connection thread hands finished queries back in batches while more work is queued; a
    finished query must still never wait for a slow one queued behind it."""
    db = {"pool_size": 1}
    config = {"workers": 1}

    def assertNotHeldBehindSlow(self, same):
        r = self.get("/c/behind-slow?n=10&s=2&same=%d" % same, timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["order"], ["fast"] * 10 + ["timer", "slow"])

    def test_finished_queries_are_handed_back_before_a_slow_statement_starts(self):
        self.assertNotHeldBehindSlow(same=0)

    def test_finished_queries_are_handed_back_while_a_fast_statement_turns_slow(self):
        self.assertNotHeldBehindSlow(same=1)

    def test_batched_completions_reach_every_request(self):
        paths = [("/c/quick?v=%d" % i,) for i in range(100)]
        for i, r in enumerate(in_parallel(self.get, paths)):
            self.assertJson(r, 200, {"v": i + 1})


if __name__ == "__main__":
    harness.main()
