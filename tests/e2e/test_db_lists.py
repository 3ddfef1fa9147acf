"""List parameters: db.query("... WHERE id IN (?)", {3, 5, 8}) expands the list's `?` and binds
every element on its own, against the real MariaDB. Padding an IN list to a power of two never
changes the rows; values in a list stay data; `?` in strings and comments are not placeholders;
misuse raises a clear error."""

import dbharness
import harness
from dbharness import rows_of, unique_name

TABLE = unique_name("lists")
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


class ListParamTest(dbharness.DbServerTestCase):

    @classmethod
    def setUpDatabase(cls, db):
        values = ", ".join("(%d, '%s')" % (i + 1, n) for i, n in enumerate(NAMES))
        db.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(200), "
               "note VARCHAR(200) NULL) DEFAULT CHARSET=utf8mb4; "
               "INSERT INTO {t} (id, name) VALUES {v}".format(t=TABLE, v=values))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    def ids(self, sql, *params):
        return [r["id"] for r in rows_of(self.sql(sql % TABLE, *params))]

    def error_text(self, sql, *params):
        doc = self.sql(sql, *params, catch=True)
        self.assertIn("error", doc, doc)
        self.assertFalse(doc["error"]["is_error"], "a misuse is a plain Lua error: %r" % doc)
        return doc["error"]["text"]

    # -- expansion

    def test_a_list_of_integers_selects_its_rows(self):
        self.assertEqual(self.ids("SELECT id FROM %s WHERE id IN (?) ORDER BY id", [3, 5, 8]),
                         [3, 5, 8])

    def test_a_list_of_strings_selects_its_rows(self):
        self.assertEqual(self.ids("SELECT id FROM %s WHERE name IN (?) ORDER BY id",
                                  ["carol", "alice", "nobody"]), [1, 3])

    def test_padding_to_a_power_of_two_gives_the_same_rows_at_every_length(self):
        for n in range(1, 11):
            wanted = list(range(1, n + 1))
            with self.subTest(n=n):
                self.assertEqual(self.ids("SELECT id FROM %s WHERE id IN (?) ORDER BY id",
                                          list(reversed(wanted))), wanted)
                doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE id <= 10 AND id NOT IN (?)" % TABLE,
                               wanted)
                self.assertEqual(doc["rows"], [{"n": 10 - n}])

    def test_lists_and_scalars_mix_in_order(self):
        self.assertEqual(self.ids("SELECT id FROM %s WHERE id > ? AND id IN (?) AND name IN (?) "
                                  "AND id < ? ORDER BY id", 1, [1, 2, 3, 4, 9],
                                  ["bob", "dave", "ivan", "alice"], 9), [2, 4])

    def test_a_list_with_db_null_binds_null(self):
        doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE id IN (?)" % TABLE, [1, None, 2])
        self.assertEqual(doc["rows"], [{"n": 2}])
        doc = self.sql("SELECT CONCAT_WS('|', ?) AS s", ["a", None, "b"])
        self.assertEqual(doc["rows"], [{"s": "a|b"}])

    def test_a_list_in_values_is_expanded_exactly(self):
        doc = self.sql("INSERT INTO %s (id, name, note) VALUES (?)" % TABLE, [101, "zed", None])
        self.assertEqual(doc["affected_rows"], 1, doc)
        self.assertEqual(self.database.sql("SELECT id, name, note FROM %s WHERE id = 101" % TABLE),
                         [["101", "zed", None]])

    def test_a_long_list_outside_in_is_bound_exactly(self):
        values = ["v%d" % i for i in range(40)]     # past 16: prepared for this one use
        for _ in range(2):
            doc = self.sql("SELECT CONCAT_WS(',', ?) AS s", values)
            self.assertEqual(doc["rows"], [{"s": ",".join(values)}])

    def test_a_long_in_list_selects_its_rows(self):
        ids = list(range(1, 1001))
        doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE id IN (?) AND id <= 10" % TABLE, ids)
        self.assertEqual(doc["rows"], [{"n": 10}])

    def test_booleans_and_doubles_in_a_list_follow_the_scalar_rules(self):
        doc = self.sql("SELECT CONCAT_WS(',', ?) AS s", [True, False, 1.5, 7])
        self.assertEqual(doc["rows"], [{"s": "1,0,1.5,7"}])

    # -- placeholders the server would not see

    def test_question_marks_in_strings_and_comments_are_not_placeholders(self):
        doc = self.sql("SELECT id, '?' AS q, \"a?\" AS r, `id` AS `w?` FROM %s /* ? */ "
                       "WHERE id IN (?) -- ?\n AND name <> ? # ?\n ORDER BY id" % TABLE,
                       [1, 2, 3], "bob")
        self.assertEqual(rows_of(doc), [{"id": 1, "q": "?", "r": "a?", "w?": 1},
                                        {"id": 3, "q": "?", "r": "a?", "w?": 3}])

    def test_escaped_quotes_do_not_end_the_string(self):
        doc = self.sql("SELECT 'it''s ?' AS a, 'back\\\\'' ?' AS b, CONCAT_WS('-', ?) AS c",
                       ["x", "y"])
        self.assertEqual(doc["rows"], [{"a": "it's ?", "b": "back\\' ?", "c": "x-y"}])

    # -- values stay data

    def test_injection_attempts_in_a_list_stay_data(self):
        attempts = ["1) OR 1=1 -- ", "x' OR '1'='1", "'); DROP TABLE %s; --" % TABLE, "alice"]
        self.assertEqual(self.ids("SELECT id FROM %s WHERE name IN (?) ORDER BY id", attempts), [1])
        doc = self.sql("SELECT COUNT(*) AS n FROM %s WHERE name IN (?)" % TABLE, attempts[:2])
        self.assertEqual(doc["rows"], [{"n": 0}])
        doc = self.sql("SELECT CONCAT_WS('|', ?) AS s", attempts)
        self.assertEqual(doc["rows"], [{"s": "|".join(attempts)}])
        self.assertEqual(self.database.sql("SHOW TABLES LIKE '%s'" % TABLE), [[TABLE]])

    # -- misuse

    def test_an_empty_list_raises_naming_the_parameter(self):
        text = self.error_text("SELECT id FROM %s WHERE id > ? AND id IN (?)" % TABLE, 0, [])
        self.assertIn("list parameter #2 is empty", text)

    def test_a_table_that_is_not_an_array_raises_a_type_error(self):
        text = self.error_text("SELECT id FROM %s WHERE id IN (?)" % TABLE, {"a": 1})
        self.assertIn("parameter #1 is a table that is not an array", text)

    def test_a_nested_table_in_a_list_raises_naming_the_element(self):
        text = self.error_text("SELECT id FROM %s WHERE id IN (?)" % TABLE, [1, [2]])
        self.assertIn("parameter #1[2] is a table", text)

    def test_a_list_without_its_own_placeholder_raises(self):
        text = self.error_text("SELECT '?' AS a, ?", 1, [1, 2])
        self.assertIn("list parameter #2 has no ? of its own", text)

    def test_more_than_65535_placeholders_raise_before_reaching_the_server(self):
        text = self.error_text("SELECT CONCAT_WS(',', ?) AS s", list(range(70000)))
        self.assertIn("too many parameters", text)
        self.assertIn("65535", text)

    def test_the_server_stays_usable_after_list_errors(self):
        self.error_text("SELECT ?", [])
        self.assertEqual(self.ids("SELECT id FROM %s WHERE id IN (?)", [4]), [4])


if __name__ == "__main__":
    harness.main()
