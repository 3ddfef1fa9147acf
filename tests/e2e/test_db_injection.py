"""SQL injection attempts passed as ? parameters stay data: stored and compared literally, and the
statement around them is never changed."""

import dbharness
import harness
from dbharness import rows_of, unique_name

TABLE = unique_name("inj")

ATTEMPTS = [
    "'; DROP TABLE %s; --" % TABLE,
    "1 OR 1=1",
    "x' OR '1'='1",
    "\\'; DELETE FROM %s; -- " % TABLE,
    '"; DROP TABLE %s; #' % TABLE,
    "admin'/*",
    "1; SELECT SLEEP(5)",
    "\x00'; DROP TABLE %s; --" % TABLE,
    "%' OR name LIKE '%",
]


class InjectionTest(dbharness.DbServerTestCase):

    @classmethod
    def setUpDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT AUTO_INCREMENT "
                         "PRIMARY KEY, name VARCHAR(200) NOT NULL) DEFAULT CHARSET=utf8mb4; "
                         "INSERT INTO {t} (name) VALUES ('alice'), ('bob'), ('carol')"
                         .format(t=TABLE))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    def assertTableIntact(self):
        tables = self.database.sql("SHOW TABLES LIKE '%s'" % TABLE)
        self.assertEqual(tables, [[TABLE]], "the table was dropped")
        rows = self.database.sql("SELECT name FROM %s WHERE id <= 3 ORDER BY id" % TABLE)
        names = [r[0] for r in rows]
        self.assertEqual(names, ["alice", "bob", "carol"], "the seed rows were changed")

    def test_injection_strings_are_stored_literally(self):
        for attempt in ATTEMPTS:
            with self.subTest(attempt=attempt):
                doc = self.sql("INSERT INTO %s (name) VALUES (?)" % TABLE, attempt.encode().hex(),
                               hex=[1])
                self.assertEqual(doc["affected_rows"], 1, doc)
                rid = doc["insert_id"]
                back = self.sql("SELECT name FROM %s WHERE id = ?" % TABLE, rid, hex_cols=["name"])
                self.assertEqual(rows_of(back), [{"name": attempt.encode().hex()}])
                self.assertTableIntact()

    def test_injection_strings_match_only_their_own_row(self):
        ids = {}
        for attempt in ATTEMPTS:
            doc = self.sql("INSERT INTO %s (name) VALUES (?)" % TABLE, attempt.encode().hex(),
                           hex=[1])
            ids[attempt] = doc["insert_id"]
        for attempt in ATTEMPTS:
            with self.subTest(attempt=attempt):
                doc = self.sql("SELECT id FROM %s WHERE name = ? AND id >= ?" % TABLE,
                               attempt.encode().hex(), min(ids.values()), hex=[1])
                self.assertEqual(rows_of(doc), [{"id": ids[attempt]}])
        self.assertTableIntact()

    def test_or_1_equals_1_does_not_widen_a_where_clause(self):
        doc = self.sql("SELECT id FROM %s WHERE name = ?" % TABLE, "1 OR 1=1")
        self.assertNotIn({"id": 1}, rows_of(doc))
        self.assertNotIn({"id": 2}, rows_of(doc))
        doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE name = ? AND id <= 3" % TABLE,
                       "x' OR '1'='1")
        self.assertEqual(doc["rows"], [{"n": 0}], "a seed row matched")
        # Against an INT column MariaDB converts the string by its numeric prefix: one row at most.
        doc = self.sql("SELECT id FROM %s WHERE id = ?" % TABLE, "1 OR 1=1")
        self.assertEqual(rows_of(doc), [{"id": 1}])

    def test_drop_table_in_a_parameter_leaves_the_table(self):
        doc = self.sql("SELECT ? AS v", "'; DROP TABLE %s; --" % TABLE)
        self.assertEqual(doc["rows"], [{"v": "'; DROP TABLE %s; --" % TABLE}])
        doc = self.sql("DELETE FROM %s WHERE name = ?" % TABLE, "'; DROP TABLE %s; --" % TABLE)
        self.assertIn(doc["affected_rows"], (0, 1, 2))
        self.assertTableIntact()

    def test_like_wildcards_in_a_parameter_compare_literally_with_equals(self):
        doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE name = ? AND id <= 3" % TABLE, "%")
        self.assertEqual(doc["rows"], [{"n": 0}])

    def test_stacked_statement_in_a_parameter_does_not_run(self):
        r, doc = dbharness.timed(self.sql, "SELECT ? AS v", "1; SELECT SLEEP(5)")
        self.assertEqual(doc["rows"], [{"v": "1; SELECT SLEEP(5)"}])
        self.assertLess(r, 2.0, "the SLEEP ran")

    def test_stacked_statements_in_the_sql_text_are_rejected(self):
        # Prepared statements take one statement: a second one is a syntax error, not run.
        doc = self.sql("SELECT 1 AS a; DROP TABLE %s" % TABLE, catch=True)
        self.assertEqual(doc["error"]["kind"], "query", doc)
        self.assertEqual(doc["error"]["code"], 1064, doc)
        self.assertTableIntact()


if __name__ == "__main__":
    harness.main()
