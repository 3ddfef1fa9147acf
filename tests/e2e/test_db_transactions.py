"""db.transaction: commit on return, rollback and re-raise on error, nested savepoints, and the
connection going back to the pool clean. pool_size = 1, so every request reuses the connection
the previous transaction had."""

import dbharness
import harness
from dbharness import unique_name

TABLE = unique_name("tx")


class TransactionTest(dbharness.DbServerTestCase):
    db = {"pool_size": 1}
    config = {"workers": 1}

    @classmethod
    def setUpDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, "
                         "balance BIGINT NOT NULL) ENGINE=InnoDB".format(t=TABLE))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    def stored(self, lo, hi):
        """{id: balance} of the rows with lo <= id <= hi, read by another client."""
        rows = self.database.sql("SELECT id, balance FROM %s WHERE id BETWEEN %d AND %d"
                                 % (TABLE, lo, hi))
        return {int(i): int(b) for i, b in rows}

    def assertConnectionClean(self):
        doc = self.assertJson(self.get("/tx/in-transaction"), 200)
        self.assertEqual(doc["in_tx"], 0, "the pooled connection is still inside a transaction")
        return doc["conn"]

    def test_committed_transaction_is_visible_to_other_connections(self):
        r = self.post("/tx/commit", {"rows": [[101, 10], [102, 20]]}, t=TABLE)
        self.assertJson(r, 200, {"inserted": 2, "second": "done"})
        self.assertEqual(self.stored(101, 102), {101: 10, 102: 20})
        self.assertConnectionClean()

    def test_lua_error_inside_transaction_rolls_back_and_is_a_500(self):
        r = self.post("/tx/raise", t=TABLE, id=201)
        self.assertServerError(r)
        self.assertLog(lambda log: "deliberate failure inside the transaction" in log,
                       "the error raised in the transaction is not in the log")
        self.assertEqual(self.stored(201, 201), {})
        self.assertConnectionClean()

    def test_db_error_inside_transaction_rolls_back_and_is_re_raised(self):
        doc = self.assertJson(self.post("/tx/raise-caught", t=TABLE, id=301), 200)
        self.assertFalse(doc["ok"])
        self.assertEqual(doc["err"]["code"], 1062, doc)
        self.assertEqual(doc["err"]["sqlstate"], "23000", doc)
        self.assertEqual(doc["err"]["kind"], "query", doc)
        self.assertTrue(doc["err"]["is_error"], "re-raised as the same error object")
        self.assertIn("Duplicate entry", doc["err"]["message"])
        self.assertEqual(self.stored(301, 301), {}, "the first insert was not rolled back")
        self.assertConnectionClean()

    def test_statement_error_caught_inside_transaction_keeps_the_rest(self):
        doc = self.assertJson(self.post("/tx/statement-error-caught", t=TABLE, id=401), 200)
        self.assertEqual(doc, {"caught_code": 1062})
        self.assertEqual(self.stored(401, 402), {401: 1, 402: 3})

    def test_nested_savepoint_rollback_keeps_the_outer_work(self):
        doc = self.assertJson(self.post("/tx/nested", t=TABLE, id=501, mode="inner_fail"), 200)
        self.assertTrue(doc["ok"], doc)
        self.assertFalse(doc["inner_ok"], doc)
        self.assertIn("inner failure", doc["inner"])
        self.assertEqual(self.stored(501, 503), {501: 1, 503: 3})
        self.assertConnectionClean()

    def test_nested_savepoint_that_returns_keeps_everything(self):
        doc = self.assertJson(self.post("/tx/nested", t=TABLE, id=601, mode="ok"), 200)
        self.assertEqual(doc, {"ok": True, "inner_ok": True, "inner": "inner result"})
        self.assertEqual(self.stored(601, 603), {601: 1, 602: 2, 603: 3})

    def test_outer_failure_rolls_back_the_released_savepoint_too(self):
        doc = self.assertJson(self.post("/tx/nested", t=TABLE, id=701, mode="outer_fail"), 200)
        self.assertFalse(doc["ok"], doc)
        self.assertIn("outer failure", doc["err"])
        self.assertEqual(self.stored(701, 703), {})
        self.assertConnectionClean()

    def test_three_levels_innermost_rollback_keeps_the_middle_and_outer_work(self):
        self.assertJson(self.post("/tx/deep", t=TABLE, id=801), 200, {"ok": True})
        self.assertEqual(self.stored(801, 804), {801: 0, 802: 0, 804: 0})

    def test_work_after_a_failed_transaction_runs_on_a_clean_connection(self):
        before = self.assertConnectionClean()
        self.assertServerError(self.post("/tx/raise", t=TABLE, id=901))
        after = self.assertConnectionClean()
        self.assertEqual(before, after, "pool_size = 1: the same connection serves both")
        self.assertJson(self.post("/tx/commit", {"rows": [[902, 5]]}, t=TABLE), 200,
                        {"inserted": 1, "second": "done"})
        # autocommit is back on: a plain insert is visible to another client at once.
        self.sql("INSERT INTO %s (id, balance) VALUES (?, ?)" % TABLE, 903, 7)
        self.assertEqual(self.stored(901, 903), {902: 5, 903: 7})

    def test_transfer_moves_balance_between_accounts(self):
        self.database.sql("INSERT INTO %s (id, balance) VALUES (1001, 100), (1002, 50)" % TABLE)
        r = self.post("/transfer", t=TABLE, **{"from": 1001, "to": 1002, "amount": 30})
        self.assertJson(r, 200, {"ok": True, "from_balance": 70})
        self.assertEqual(self.stored(1001, 1002), {1001: 70, 1002: 80})

    def test_transfer_with_insufficient_funds_is_409_and_moves_nothing(self):
        self.database.sql("INSERT INTO %s (id, balance) VALUES (1101, 10), (1102, 0)" % TABLE)
        r = self.post("/transfer", t=TABLE, **{"from": 1101, "to": 1102, "amount": 11})
        self.assertResponse(r, 409, "insufficient funds")
        self.assertEqual(self.stored(1101, 1102), {1101: 10, 1102: 0})
        self.assertConnectionClean()

    def test_transfer_to_a_missing_account_rolls_back_the_debit(self):
        self.database.sql("INSERT INTO %s (id, balance) VALUES (1201, 10)" % TABLE)
        r = self.post("/transfer", t=TABLE, **{"from": 1201, "to": 1299, "amount": 5})
        self.assertResponse(r, 404, "no account 1299")
        self.assertEqual(self.stored(1201, 1299), {1201: 10})
        self.assertConnectionClean()

    def test_transaction_object_used_after_its_block_raises(self):
        doc = self.assertJson(self.get("/tx/after-end"), 200)
        self.assertFalse(doc["ok"])
        self.assertIn("already finished", doc["err"])
        self.assertServerError(self.get("/tx/after-end", uncaught=1))
        self.assertLog(lambda log: "GET /tx/after-end" in log and "already finished" in log,
                       "no log line for the finished transaction")
        self.assertConnectionClean()

    def test_many_failed_transactions_in_a_row_leave_the_pool_usable(self):
        for i in range(20):
            self.assertServerError(self.post("/tx/raise", t=TABLE, id=1300 + i))
        self.assertEqual(self.stored(1300, 1319), {})
        self.assertConnectionClean()
        stats = self.stats()
        self.assertEqual((stats["size"], stats["busy"], stats["waiting"]), (1, 0, 0), stats)


if __name__ == "__main__":
    harness.main()
