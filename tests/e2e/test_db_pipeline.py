"""db.pipeline > 1: statements sent down a connection before the ones ahead of them are answered,
executed and read by Squall's own wire code (server/db_wire.c) instead of Connector/C once a
statement is prepared on that connection. The behaviours the pool is tested for hold with it
(the same test classes, run again with a pipeline, on a database thread and hosted); on top:
values of every type come back the same through both paths, many requests on two connections
each get their own answer, an error, a KILL past query_timeout and a lost connection in the
middle of a pipeline end only what they should."""

import json
import os
import threading
import time

import dbharness
import harness
import test_db_concurrency
import test_db_engine
import test_db_lifecycle
import test_db_network
import test_db_transactions
import test_db_types
from dbharness import in_parallel, poll, timed, unique_name

PIPE = {"pipeline": 4}


def piped(base, **more):
    return dict(base.db, **PIPE, **more)


# ---- what the pool is tested for, with a pipeline ---------------------------------------------

class PipedTransactionTest(test_db_transactions.TransactionTest):
    db = piped(test_db_transactions.TransactionTest)


class PipedPoolConcurrencyTest(test_db_concurrency.PoolConcurrencyTest):
    db = piped(test_db_concurrency.PoolConcurrencyTest)


class PipedCompletionBatchingTest(test_db_concurrency.CompletionBatchingTest):
    db = piped(test_db_concurrency.CompletionBatchingTest)


class PipedManyConnectionsTest(test_db_engine.ManyConnectionsOneThreadTest):
    db = piped(test_db_engine.ManyConnectionsOneThreadTest)


class PipedKillQueryTest(test_db_engine.KillQueryOnOneThreadTest):
    db = piped(test_db_engine.KillQueryOnOneThreadTest)


class PipedLostConnectionTest(test_db_engine.LostConnectionOnOneThreadTest):
    db = piped(test_db_engine.LostConnectionOnOneThreadTest)


class PipedHostedKillQueryTest(test_db_engine.KillQueryOnOneThreadTest):
    db = piped(test_db_engine.KillQueryOnOneThreadTest, threads=0)
    config = {"workers": 1}


class PipedMaxLifetimeTest(test_db_lifecycle.MaxLifetimeTest):
    db = piped(test_db_lifecycle.MaxLifetimeTest)


class PipedInitSqlTest(test_db_lifecycle.InitSqlTest):
    db = piped(test_db_lifecycle.InitSqlTest)


class PipedBlackholeTest(test_db_network.BlackholeTest):
    db = piped(test_db_network.BlackholeTest)


class PipedStatementCacheTest(test_db_types.StatementCacheTest):
    db = piped(test_db_types.StatementCacheTest)


class PipedTypesTest(test_db_types.TypesTest):
    """One connection: a statement's first run goes through Connector/C (it prepares it), the
    runs after it through the wire code. Every SELECT of the type tests runs three times and must
    give the same answer each time; their INSERTs repeat shapes, so parameters go both ways."""

    db = dict(PIPE, pool_size=1)
    config = {"workers": 1}

    def sql(self, statement, *params, **opts):
        docs = [super(PipedTypesTest, self).sql(statement, *params, **opts)]
        if statement.lstrip().upper().startswith("SELECT"):
            docs += [super(PipedTypesTest, self).sql(statement, *params, **opts) for _ in range(2)]
        for doc in docs[1:]:
            self.assertEqual(doc, docs[0], "%s: the second or third run answered differently" % statement)
        return docs[0]

    def test_a_row_of_more_than_16_mib_comes_back_whole_through_both_paths(self):
        size = 9 * 1024 * 1024  # two copies in one row: its packet is split at 16 MiB
        doc = self.assertJson(self.post("/types/large-twice", t=test_db_types.TABLE, size=size,
                                        timeout=60), 200)
        self.assertEqual(doc, [{"same": True, "len": size}] * 2)


# ---- pipelines ---------------------------------------------------------------------------------

TABLE = unique_name("pipe_rows")
N = 300


class PipelineTest(dbharness.DbServerTestCase):
    db = dict(PIPE, threads=1, pool_size=2, min_idle=2, queue_timeout=20)
    config = {"workers": 1}

    @classmethod
    def setUpDatabase(cls, db):
        values = ", ".join("(%d, 'row-%d')" % (i, i * 7) for i in range(1, N + 1))
        db.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, val VARCHAR(20) "
               "NOT NULL) ENGINE=InnoDB; INSERT INTO {t} VALUES {v}".format(t=TABLE, v=values))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    def test_many_requests_on_two_connections_are_pipelined_and_each_gets_its_own_row(self):
        before = self.pool_stats()

        def one(i):
            return harness.request(self.port, "GET", "/e/row?t=%s&id=%d&s=0" % (TABLE, i), timeout=30)

        for _ in range(2):
            responses = in_parallel(one, [(i,) for i in range(1, N + 1)], 60)
            conns = set()
            for i, r in enumerate(responses, 1):
                doc = self.assertJson(r, 200)
                self.assertEqual((doc["id"], doc["val"], doc["echo"]), (i, "row-%d" % (i * 7), i), doc)
                conns.add(doc["conn"])
            self.assertEqual(len(conns), 2, conns)
        self.wait_pool_idle()
        after = self.pool_stats()
        self.assertEqual(after["queries"] - before["queries"], 2 * N, (before, after))
        self.assertEqual((after["errors"], after["timeouts"], after["exhausted"]),
                         (before["errors"], before["timeouts"], before["exhausted"]), (before, after))
        self.assertGreater(after["pipelined"] - before["pipelined"], 0, "%d requests at once on 2 connections, and no "
                           "statement was sent behind another: %r" % (N, after))

    def test_a_statement_that_fails_inside_a_pipeline_fails_only_its_own_request(self):
        t = unique_name("pipe_dups")
        self.database.sql("CREATE TABLE %s (id INT PRIMARY KEY)" % t)
        try:
            self.sql("INSERT INTO %s (id) VALUES (?)" % t, 0)  # prepared on one connection at least
            before = self.pool_stats()

            def insert(i):
                # even ids twice: one of the two must fail with a duplicate key, the rest succeed
                return self.post("/sql", {"sql": "INSERT INTO %s (id) VALUES (?)" % t,
                                          "params": [i // 2 * 2 if i % 4 < 2 else i], "catch": True})

            docs = [self.assertJson(r, 200) for r in in_parallel(insert, [(i,) for i in range(1, 201)])]
            failed = [d["error"] for d in docs if "error" in d]
            for err in failed:
                self.assertEqual((err["kind"], err["code"]), ("query", 1062), err)
            ids = {int(r[0]) for r in self.database.sql("SELECT id FROM %s" % t)}
            wanted = {i // 2 * 2 if i % 4 < 2 else i for i in range(1, 201)} | {0}
            self.assertEqual(ids, wanted)
            self.assertEqual(len(failed), 200 - (len(wanted) - 1), failed[:3])
            after = self.pool_stats()
            self.assertEqual(after["errors"] - before["errors"], len(failed), (before, after))
            self.assertEqual(self.assertJson(self.get("/c/quick?v=41"), 200), {"v": 42})
        finally:
            self.database.sql("DROP TABLE IF EXISTS %s" % t)


class PipelineOnOneConnectionTest(dbharness.DbServerTestCase):
    """A pool of one: what arrives while its statement runs goes down the same connection."""

    db = dict(PIPE, threads=1, pool_size=1, min_idle=1, query_timeout=1)
    config = {"workers": 1}

    def warm(self, tag):
        # Both statements prepared on the connection, so that the next runs are pipelined.
        self.assertJson(self.get("/c/sleep?s=0&tag=" + tag), 200, {"slept": 0, "tag": tag})
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})

    def behind(self, n):
        """n quick requests sent while the connection is busy; returns their ThreadResults."""
        return [harness.ThreadResult(self.get, "/c/quick?v=%d" % (10 * k), 10) for k in range(n)]

    def test_a_kill_past_query_timeout_ends_only_the_slow_statement_and_not_those_behind_it(self):
        tag = "pipe_victim_%d" % os.getpid()
        self.warm(tag)
        before = self.pool_stats()
        t0 = time.monotonic()
        slow = harness.ThreadResult(self.post, "/sql", {"sql": "SELECT SLEEP(?) AS slept, '%s' AS tag" % tag,
                                                        "params": [3], "catch": True}, 10)
        time.sleep(0.2)
        quick = self.behind(3)
        err = self.assertJson(slow.get(), 200).get("error")
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(err, "SLEEP(3) with query_timeout = 1 succeeded")
        self.assertEqual(err["kind"], "timeout", err)
        self.assertLess(elapsed, 1.7, "query_timeout = 1 but the slow request took %.2fs" % elapsed)
        for k, q in enumerate(quick):
            self.assertJson(q.get(), 200, {"v": 10 * k + 1})
        self.assertLess(time.monotonic() - t0, 2.0, "the statements behind the killed one waited")
        after = self.pool_stats()
        self.assertEqual(after["timeouts"] - before["timeouts"], 1, (before, after))
        self.assertEqual(after["errors"], before["errors"], (before, after))
        self.assertEqual(after["pipelined"] - before["pipelined"], 3, "the 3 quick queries were "
                         "not sent behind the slow one: %r" % ((before, after),))

    def test_columns_that_changed_type_under_a_transaction_are_read_right_by_the_pipeline_after_it(self):
        # Inside a transaction Connector/C runs the statement and takes the new column types;
        # the server sends them once, so the wire code must learn them from Connector/C.
        t = unique_name("pipe_alter")
        sel = "SELECT id, v, 'x' AS tail FROM %s WHERE id = ?" % t
        self.database.sql("CREATE TABLE %s (id INT PRIMARY KEY, v INT); INSERT INTO %s VALUES (1, 5)" % (t, t))
        try:
            for _ in range(2):
                self.assertEqual(self.sql(sel, 1)["rows"], [{"id": 1, "v": 5, "tail": "x"}])
            self.database.sql("ALTER TABLE %s MODIFY v BIGINT; UPDATE %s SET v = 1099511627776" % (t, t))
            doc = self.assertJson(self.post("/tx/sql", {"sql": sel, "params": [1]}), 200)
            self.assertEqual(doc["rows"], [{"id": 1, "v": 1099511627776, "tail": "x"}])
            for _ in range(2):
                self.assertEqual(self.sql(sel, 1)["rows"], [{"id": 1, "v": 1099511627776, "tail": "x"}])
        finally:
            self.database.sql("DROP TABLE IF EXISTS %s" % t)

    def test_a_connection_lost_with_statements_in_flight_fails_them_and_the_next_one_reconnects(self):
        tag = "pipe_lost_%d" % os.getpid()
        self.warm(tag)
        before = self.pool_stats()
        slow = harness.ThreadResult(self.post, "/sql", {"sql": "SELECT SLEEP(?) AS slept, '%s' AS tag" % tag,
                                                        "params": [0.8], "catch": True}, 10)
        conn_id = self.database.running_id("SELECT SLEEP%" + tag + "%")
        quick = self.behind(3)
        time.sleep(0.2)
        self.database.kill(conn_id)
        err = self.assertJson(slow.get(), 200).get("error")
        self.assertIsNotNone(err, "the statement of a killed connection succeeded")
        self.assertEqual(err["kind"], "unavailable", err)
        for q in quick:  # in flight behind it on the only connection: lost with it
            self.assertUnavailable(q.get())
        self.assertJson(self.get("/c/quick?v=5"), 200, {"v": 6})
        _, seen = poll(self.pool_stats, lambda s: s["open"] == 1 and s["busy"] == 0, 5)
        self.assertEqual((seen[-1]["open"], seen[-1]["busy"]), (1, 0), seen[-1])
        self.assertEqual(seen[-1]["pipelined"] - before["pipelined"], 3, (before, seen[-1]))


if __name__ == "__main__":
    harness.main()
