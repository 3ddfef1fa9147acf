"""Column types through squall.db: values go in as ? parameters, come back from SELECT, and are
compared both as Lua saw them (dbapp.lua's exact(): "n:<%.17g>", "s:<hex>", "null") and in the
JSON the handler returned."""

import json

import dbharness
import harness
from dbharness import unique_name

TABLE = unique_name("types")

COLUMNS = """
  id INT AUTO_INCREMENT PRIMARY KEY,
  ti TINYINT NULL, tiu TINYINT UNSIGNED NULL, si SMALLINT NULL, siu SMALLINT UNSIGNED NULL,
  mi MEDIUMINT NULL, miu MEDIUMINT UNSIGNED NULL, i INT NULL, iu INT UNSIGNED NULL,
  bi BIGINT NULL, biu BIGINT UNSIGNED NULL,
  f FLOAT NULL, d DOUBLE NULL, dc DECIMAL(65,30) NULL,
  dt DATE NULL, dtm0 DATETIME NULL, dtm DATETIME(6) NULL, ts TIMESTAMP NULL DEFAULT NULL,
  ts6 TIMESTAMP(6) NULL DEFAULT NULL, tm TIME NULL, tm3 TIME(3) NULL, yr YEAR NULL,
  ch CHAR(10) NULL, vc VARCHAR(100) NULL, tx TEXT NULL, tx_long MEDIUMTEXT NULL,
  bl BLOB NULL, vb VARBINARY(64) NULL, en ENUM('small','medium','large') NULL,
  st SET('a','b','c') NULL, js JSON NULL, bo BOOLEAN NULL
"""
ALL_COLUMNS = ["ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "f", "d", "dc",
               "dt", "dtm0", "dtm", "ts", "ts6", "tm", "tm3", "yr", "ch", "vc", "tx", "tx_long",
               "bl", "vb", "en", "st", "js", "bo"]
BINARY = ["bl", "vb"]


def lua_value(exact):
    """dbapp.lua's exact() text back to Python: numbers, bytes, None."""
    if exact == "null":
        return None
    kind, _, rest = exact.partition(":")
    if kind == "n":
        v = float(rest)
        return int(v) if v.is_integer() and "e" not in rest and "." not in rest else v
    if kind == "s":
        return bytes.fromhex(rest)
    raise AssertionError("unexpected Lua value %r" % exact)


class TypesTest(dbharness.DbServerTestCase):

    @classmethod
    def setUpDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s) DEFAULT CHARSET=utf8mb4"
               % (TABLE, TABLE, COLUMNS))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP TABLE IF EXISTS %s" % TABLE)

    # -- helpers

    def insert(self, values, hex_params=()):
        """INSERT one row from {column: value}; returns its id."""
        cols = list(values)
        params = [values[c] for c in cols]
        hexes = [cols.index(c) + 1 for c in hex_params]
        doc = self.sql("INSERT INTO %s (%s) VALUES (%s)" % (TABLE, ", ".join(cols),
                                                            ", ".join("?" * len(cols))),
                       *params, hex=hexes)
        self.assertEqual(doc["affected_rows"], 1, doc)
        return doc["insert_id"]

    def select(self, row_id, cols):
        """(row as JSON, row as Lua saw it) for the given columns."""
        doc = self.sql("SELECT %s FROM %s WHERE id = ?" % (", ".join(cols), TABLE), row_id,
                       hex_cols=[c for c in cols if c in BINARY])
        self.assertEqual(doc["n"], 1, doc)
        self.assertEqual(doc["columns"], cols, doc)
        return doc["rows"][0], {k: lua_value(v) for k, v in doc["exact"][0].items()}

    def round_trip(self, values, hex_params=()):
        rid = self.insert(values, hex_params)
        return self.select(rid, list(values))

    # -- integers

    def test_signed_integer_extremes_round_trip_as_numbers(self):
        lows = {"ti": -128, "si": -32768, "mi": -8388608, "i": -2147483648}
        highs = {"ti": 127, "si": 32767, "mi": 8388607, "i": 2147483647}
        for values in (lows, highs):
            row, lua = self.round_trip(values)
            self.assertEqual(row, values)
            self.assertEqual(lua, values)

    def test_unsigned_integer_maxima_round_trip_as_numbers(self):
        values = {"tiu": 255, "siu": 65535, "miu": 16777215, "iu": 4294967295}
        row, lua = self.round_trip(values)
        self.assertEqual(row, values)
        self.assertEqual(lua, values)
        row, lua = self.round_trip({"tiu": 0, "siu": 0, "miu": 0, "iu": 0, "biu": 0})
        self.assertEqual(lua, {"tiu": 0, "siu": 0, "miu": 0, "iu": 0, "biu": 0})

    def test_bigint_extremes_come_back_as_decimal_strings(self):
        for bi, biu in (("-9223372036854775808", "18446744073709551615"),
                        ("9223372036854775807", "9223372036854775808")):
            row, lua = self.round_trip({"bi": bi, "biu": biu})
            self.assertEqual(row, {"bi": bi, "biu": biu})
            self.assertEqual(lua, {"bi": bi.encode(), "biu": biu.encode()})
        self.assertEqual(self.database.scalar("SELECT COUNT(*) FROM %s WHERE "
                                              "bi = -9223372036854775808 AND "
                                              "biu = 18446744073709551615" % TABLE), "1")

    def test_bigint_up_to_2_pow_53_is_a_number_and_beyond_a_string_in_lua(self):
        row, lua = self.round_trip({"bi": 2 ** 53, "biu": 2 ** 53})
        self.assertEqual(lua, {"bi": 2 ** 53, "biu": 2 ** 53})
        row, lua = self.round_trip({"bi": -(2 ** 53)})
        self.assertEqual(lua, {"bi": -(2 ** 53)})
        row, lua = self.round_trip({"bi": str(2 ** 53 + 1), "biu": str(2 ** 53 + 1)})
        self.assertEqual(lua, {"bi": b"9007199254740993", "biu": b"9007199254740993"})
        self.assertEqual(row, {"bi": "9007199254740993", "biu": "9007199254740993"})

    def test_bigint_up_to_2_pow_53_is_an_exact_json_number(self):
        # Integers that are exact in Lua must stay exact in a JSON body (lua-cjson 2.1.0 writes
        # numbers with %.14g unless told otherwise).
        row, _ = self.round_trip({"bi": 2 ** 53, "biu": 123456789012345})
        raw = self.post("/sql", {"sql": "SELECT bi, biu FROM %s WHERE bi = ?" % TABLE,
                                 "params": [2 ** 53], "raw": True})
        self.assertEqual(raw.status, 200, raw)
        self.assertIn(b"9007199254740992", raw.body, raw)
        self.assertEqual(row, {"bi": 2 ** 53, "biu": 123456789012345})

    # -- floating point and decimal

    def test_float_and_double_come_back_as_numbers(self):
        row, lua = self.round_trip({"f": 1.5, "d": 0.1})
        self.assertEqual(lua, {"f": 1.5, "d": 0.1})
        self.assertEqual(row, {"f": 1.5, "d": 0.1})
        row, lua = self.round_trip({"f": -0.25, "d": 1e300})
        self.assertEqual(lua, {"f": -0.25, "d": 1e300})
        row, lua = self.round_trip({"d": 2.718281828459045})   # every digit of a double
        self.assertEqual(lua, {"d": 2.718281828459045})

    def test_decimal_65_30_is_an_exact_string(self):
        for v in ("12345678901234567890123456789012345.123456789012345678901234567890",
                  "-0.000000000000000000000000000001",
                  "0.000000000000000000000000000000"):
            row, lua = self.round_trip({"dc": v})
            self.assertEqual(row, {"dc": v})
            self.assertEqual(lua, {"dc": v.encode()})

    def test_decimal_from_number_parameter(self):
        row, _ = self.round_trip({"dc": 2.5})
        self.assertEqual(row, {"dc": "2.500000000000000000000000000000"})

    # -- dates and times

    def test_date_and_time_types_come_back_as_strings(self):
        values = {"dt": "2024-02-29", "dtm0": "1999-12-31 23:59:59",
                  "dtm": "2024-02-29 23:59:58.123456", "ts": "2038-01-19 03:14:07",
                  "ts6": "2001-02-03 04:05:06.500000", "tm": "-838:59:59", "tm3": "01:02:03.450"}
        row, lua = self.round_trip(values)
        self.assertEqual(row, values)
        self.assertEqual(lua, {k: v.encode() for k, v in values.items()})

    def test_datetime_6_keeps_six_digits_when_the_fraction_is_zero(self):
        row, _ = self.round_trip({"dtm": "2024-01-01 00:00:00", "tm": "12:34:56",
                                  "tm3": "00:00:00"})
        self.assertEqual(row, {"dtm": "2024-01-01 00:00:00.000000", "tm": "12:34:56",
                               "tm3": "00:00:00.000"})

    def test_year_comes_back_as_a_number(self):
        row, lua = self.round_trip({"yr": 2155})
        self.assertEqual(row, {"yr": 2155})
        self.assertEqual(lua, {"yr": 2155})
        row, _ = self.round_trip({"yr": "1901"})
        self.assertEqual(row, {"yr": 1901})

    # -- strings

    def test_text_columns_keep_utf8mb4(self):
        values = {"ch": "é😀", "vc": "héllo wörld 😀 ✓ 漢字", "tx": "🦆" * 1000 + " end"}
        row, lua = self.round_trip(values)
        self.assertEqual(row, values)
        self.assertEqual(lua, {k: v.encode("utf-8") for k, v in values.items()})
        rid = self.insert({"vc": "😀✓"})
        doc = self.sql("SELECT CHAR_LENGTH(vc) AS c, LENGTH(vc) AS b FROM %s WHERE id = ?"
                       % TABLE, rid)
        self.assertEqual(doc["rows"], [{"c": 2, "b": 7}], "stored as utf8mb4 characters, not bytes")

    def test_binary_values_with_nul_bytes_round_trip(self):
        bl = bytes(range(256)) * 3
        vb = b"\x00a\x00b\xff\x00"
        rid = self.insert({"bl": bl.hex(), "vb": vb.hex()}, hex_params=["bl", "vb"])
        row, lua = self.select(rid, ["bl", "vb"])
        self.assertEqual(lua, {"bl": bl, "vb": vb})
        self.assertEqual(row, {"bl": bl.hex(), "vb": vb.hex()})
        self.assertEqual(self.database.sql("SELECT HEX(bl), HEX(vb) FROM %s WHERE id = %d"
                                           % (TABLE, rid)),
                         [[bl.hex().upper(), vb.hex().upper()]])

    def test_binary_value_built_in_lua_round_trips(self):
        r = self.post("/types/binary", t=TABLE)
        doc = self.assertJson(r, 200)
        self.assertEqual(doc, {"same_bl": True, "same_vb": True, "len_bl": 256, "len_vb": 6,
                               "sql_hex_bl": bytes(range(256)).hex().upper(),
                               "sql_hex_vb": "00610062FF00", "sql_len_bl": 256,
                               "lua_hex_vb": "00610062ff00"})

    def test_string_parameters_are_binary_safe(self):
        doc = self.sql("SELECT ? AS s, LENGTH(?) AS n, HEX(?) AS h", "610062", "610062", "00ff00",
                       hex=[1, 2, 3])
        self.assertEqual(doc["exact"], [{"s": "s:610062", "n": "n:3", "h": "s:" + b"00FF00".hex()}])

    def test_large_text_value_round_trips(self):
        doc = self.assertJson(self.post("/types/large", t=TABLE, size=300000), 200)
        self.assertEqual(doc, {"same": True, "len": 300000, "lua_len": 300000})

    def test_enum_and_set_come_back_as_strings(self):
        row, lua = self.round_trip({"en": "medium", "st": "a,c"})
        self.assertEqual(row, {"en": "medium", "st": "a,c"})
        self.assertEqual(lua, {"en": b"medium", "st": b"a,c"})

    def test_json_column_comes_back_as_its_text(self):
        text = '{"a": [1, 2, {"b": null}], "emoji": "😀"}'
        row, _ = self.round_trip({"js": text})
        self.assertEqual(row, {"js": text})
        self.assertEqual(json.loads(row["js"]), {"a": [1, 2, {"b": None}], "emoji": "😀"})
        r = self.sql("INSERT INTO %s (js) VALUES (?)" % TABLE, "{not json", catch=True)
        self.assertEqual(r["error"]["code"], 4025, r)    # ER_CONSTRAINT_FAILED: the JSON CHECK
        self.assertEqual(r["error"]["kind"], "query", r)

    # -- NULL and booleans

    def test_null_in_every_column_is_json_null_with_the_key_present(self):
        rid = self.insert({c: None for c in ALL_COLUMNS})
        sql = "SELECT %s FROM %s WHERE id = ?" % (", ".join(ALL_COLUMNS), TABLE)
        r = self.post("/sql", {"sql": sql, "params": [rid], "raw": True})
        self.assertEqual(r.status, 200, r)
        rows = r.json()
        self.assertEqual(rows, [{c: None for c in ALL_COLUMNS}])
        row, lua = self.select(rid, ALL_COLUMNS)
        self.assertEqual(lua, {c: None for c in ALL_COLUMNS})

    def test_nil_db_null_and_cjson_null_parameters_are_sql_null(self):
        doc = self.assertJson(self.get("/types/null-params"), 200)
        self.assertEqual(doc, {"a": 1, "b": 1, "c": 1, "d": 7, "e": 1, "null_is_cjson_null": True})
        doc = self.sql("SELECT ? AS a, ? IS NULL AS b, ? AS c", "x", None, "y", **{"nil": [2]})
        self.assertEqual(doc["rows"], [{"a": "x", "b": 1, "c": "y"}])

    def test_boolean_parameters_become_1_and_0(self):
        doc = self.assertJson(self.get("/types/booleans"), 200)
        self.assertEqual(doc, {"t": "n:1", "f": "n:0", "sum": "n:1"})
        rid_t = self.insert({"bo": True})
        rid_f = self.insert({"bo": False})
        _, lua = self.select(rid_t, ["bo"])
        self.assertEqual(lua, {"bo": 1})
        _, lua = self.select(rid_f, ["bo"])
        self.assertEqual(lua, {"bo": 0})
        doc = self.sql("SELECT id FROM %s WHERE bo = ? AND id IN (?, ?)" % TABLE, True, rid_t,
                       rid_f)
        self.assertEqual(doc["rows"], [{"id": rid_t}])

    def test_integral_numbers_compare_exactly_and_fractions_stay_fractions(self):
        doc = self.sql("SELECT ? = 3 AS eq, ? AS half, ? AS neg", 3.0, 2.5, -7)
        self.assertEqual(doc["exact"], [{"eq": "n:1", "half": "n:2.5", "neg": "n:-7"}])

    # -- result shapes

    def test_columns_keep_the_select_order(self):
        doc = self.sql("SELECT 1 AS zeta, 2 AS alpha, NULL AS mid, 'x' AS beta")
        self.assertEqual(doc["columns"], ["zeta", "alpha", "mid", "beta"])
        self.assertEqual(doc["rows"], [{"zeta": 1, "alpha": 2, "mid": None, "beta": "x"}])

    def test_rows_encode_as_a_json_array_of_objects(self):
        r = self.post("/sql", {"sql": "SELECT 1 AS a UNION ALL SELECT 2 UNION ALL SELECT 3",
                               "params": [], "raw": True})
        self.assertJson(r, 200, [{"a": 1}, {"a": 2}, {"a": 3}])

    def test_empty_result_encodes_as_an_empty_json_array(self):
        r = self.post("/sql", {"sql": "SELECT id FROM %s WHERE id < 0" % TABLE, "params": [],
                               "raw": True})
        self.assertJson(r, 200, [])

    def test_insert_reports_affected_rows_and_insert_id(self):
        doc = self.sql("INSERT INTO %s (i) VALUES (?), (?), (?)" % TABLE, 1, 2, 3)
        self.assertEqual(doc["affected_rows"], 3)
        first = doc["insert_id"]
        self.assertGreater(first, 0)
        ids = self.database.sql("SELECT id FROM %s WHERE id >= %d AND i IN (1,2,3) ORDER BY id"
                                % (TABLE, first))
        self.assertEqual([int(r[0]) for r in ids][:3], [first, first + 1, first + 2])
        doc = self.sql("UPDATE %s SET i = i WHERE id = ?" % TABLE, -1)
        self.assertEqual(doc["affected_rows"], 0)
        self.assertEqual(doc["insert_id"], 0)


class StatementCacheTest(dbharness.DbServerTestCase):
    """pool_size = 1 and stmt_cache = 2: statements are evicted and prepared again all the time,
    results stay right, and a CALL with several result sets leaves the connection usable."""

    db = {"pool_size": 1, "stmt_cache": 2}
    config = {"workers": 1}
    PROC = unique_name("proc")

    @classmethod
    def setUpDatabase(cls, db):
        db.sql("DROP PROCEDURE IF EXISTS {p};\nDELIMITER //\nCREATE PROCEDURE {p}(IN x INT) "
               "BEGIN SELECT x AS first; SELECT x + 1 AS second; END //\nDELIMITER ;\n"
               .format(p=cls.PROC))

    @classmethod
    def tearDownDatabase(cls, db):
        db.sql("DROP PROCEDURE IF EXISTS %s" % cls.PROC)

    def test_evicted_statements_are_prepared_again_with_right_results(self):
        for round_ in range(3):
            for k in range(6):
                doc = self.sql("SELECT ? * %d AS v, '%d' AS k" % (k + 1, k), round_)
                self.assertEqual(doc["rows"], [{"v": round_ * (k + 1), "k": str(k)}])

    def test_large_result_set_comes_back_whole(self):
        # World holds ids 1..10000 (db/schema.sql); two copies of it make 20000 rows.
        doc = self.sql("SELECT w.id + ? * k.k AS n, CONCAT('row', w.id + 10000 * k.k) AS label "
                       "FROM World w, (SELECT 0 AS k UNION ALL SELECT 1) k ORDER BY n", 10000)
        self.assertEqual(doc["n"], 20000)
        self.assertEqual(doc["rows"][0], {"n": 1, "label": "row1"})
        self.assertEqual(doc["rows"][-1], {"n": 20000, "label": "row20000"})
        self.assertEqual([r["n"] for r in doc["rows"]], list(range(1, 20001)))

    def test_call_with_several_result_sets_returns_the_first_and_leaves_the_connection_clean(self):
        doc = self.sql("CALL %s(?)" % self.PROC, 41)
        self.assertEqual(doc["rows"], [{"first": 41}])
        for v in (1, 2, 3):   # the same (only) connection answers the next statements right
            self.assertEqual(self.sql("SELECT ? AS v", v)["rows"], [{"v": v}])
        doc = self.sql("CALL %s(?)" % self.PROC, 7)
        self.assertEqual(doc["rows"], [{"first": 7}])
        self.assertEqual(self.sql("SELECT 'after' AS v")["rows"], [{"v": "after"}])

    def test_cached_statement_follows_its_table_when_columns_change_type_come_and_go(self):
        t = unique_name("shape")
        self.database.sql("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id INT PRIMARY KEY, v INT, "
                          "s MEDIUMTEXT); INSERT INTO {t} VALUES (1, 42, 'ab')".format(t=t))
        self.addCleanup(self.database.sql, "DROP TABLE IF EXISTS %s" % t)
        q = "SELECT * FROM %s WHERE id = ?" % t
        self.assertEqual(self.sql(q, 1)["rows"], [{"id": 1, "v": 42, "s": "ab"}])
        # Longer strings than the statement has fetched so far, through the same statement: one
        # that its buffer keeps, one past the 64 KiB it keeps (freed after use, then regrown).
        for n in (4000, 70000, 5):
            self.database.sql("UPDATE %s SET s = REPEAT('x', %d)" % (t, n))
            self.assertEqual(self.sql(q, 1)["rows"], [{"id": 1, "v": 42, "s": "x" * n}])
        # Same columns, one of another type: the cached statement's binding must be rebuilt.
        self.database.sql("ALTER TABLE {t} MODIFY v VARCHAR(20); UPDATE {t} SET v = 'forty-two', "
                          "s = 'cd'".format(t=t))
        doc = self.sql(q, 1)
        self.assertEqual(doc["columns"], ["id", "v", "s"])
        self.assertEqual(doc["exact"], [{"id": "n:1", "v": "s:" + b"forty-two".hex(),
                                         "s": "s:" + b"cd".hex()}])
        self.database.sql("UPDATE {t} SET v = '7'; ALTER TABLE {t} MODIFY v INT".format(t=t))
        self.assertEqual(self.sql(q, 1)["exact"], [{"id": "n:1", "v": "n:7", "s": "s:" + b"cd".hex()}])
        self.database.sql("ALTER TABLE {t} MODIFY v VARCHAR(20); UPDATE {t} SET v = 'forty-two'; "
                          "ALTER TABLE {t} ADD COLUMN w DOUBLE DEFAULT 1.5".format(t=t))
        doc = self.sql(q, 1)
        self.assertEqual(doc["columns"], ["id", "v", "s", "w"])
        self.assertEqual(doc["rows"], [{"id": 1, "v": "forty-two", "s": "cd", "w": 1.5}])
        self.database.sql("ALTER TABLE %s DROP COLUMN v" % t)
        doc = self.sql(q, 1)
        self.assertEqual(doc["columns"], ["id", "s", "w"])
        self.assertEqual(doc["rows"], [{"id": 1, "s": "cd", "w": 1.5}])

    def test_failed_statement_can_run_again(self):
        for _ in range(3):
            doc = self.sql("SELECT * FROM t_no_such_table_for_cache", catch=True)
            self.assertEqual(doc["error"]["code"], 1146, doc)
        self.assertEqual(self.sql("SELECT 5 AS v")["rows"], [{"v": 5}])


if __name__ == "__main__":
    harness.main()
