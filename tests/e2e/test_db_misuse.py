"""Using squall.db wrongly gives a clear error: from a coroutine of the app's own (in a handler, or
while the app loads: then --check and start-up fail), with a parameter of an unsupported type, with
the wrong number of values for the placeholders, or with no db table in config.lua.

A plain query at a module's top level is allowed since loading runs in a coroutine (hot reload);
test_reload_toplevel_yield.py covers that."""

import re
import unittest

import dbharness
import harness

TOPLEVEL_APP = """local squall = require "squall"
local db = require "squall.db"
local app = squall.app()
local rows = coroutine.wrap(function() return db.query("SELECT 1 AS one") end)()
app:get("/", function(req) return "unreachable" end)
return app
"""
TOPLEVEL_LINE = 4

LOAD_TIME_RE = re.compile(r"from a request handler.*coroutine of your own")


def error_line(log, request_line):
    """The [error] line for request_line, or ''."""
    for line in log.splitlines():
        if "[error]" in line and request_line in line:
            return line
    return ""


class MisuseTest(dbharness.DbServerTestCase):
    db = {"pool_size": 2}

    def assertErrorLogged(self, request_line, *needles):
        def found(log):
            line = error_line(log, request_line)
            return line and all(n in line for n in needles)
        text = self.assertLog(found, "no [error] line for %r containing %r"
                              % (request_line, needles))
        return error_line(text, request_line)

    def test_db_query_from_an_own_coroutine_is_a_500_naming_the_rule(self):
        self.assertServerError(self.get("/m/own-coroutine"))
        line = self.assertErrorLogged("GET /m/own-coroutine", "from a request handler")
        self.assertIn("coroutine", line)
        self.assertIn("dbapp.lua:", line, "the traceback should point at the app")

    def test_table_parameter_is_a_500_mentioning_parameter_1(self):
        self.assertServerError(self.get("/m/table-param"))
        self.assertErrorLogged("GET /m/table-param", "parameter #1", "table")

    def test_function_parameter_is_a_500_mentioning_parameter_2(self):
        self.assertServerError(self.get("/m/function-param"))
        self.assertErrorLogged("GET /m/function-param", "parameter #2", "function")

    def test_too_few_values_for_the_placeholders_is_error_2034(self):
        doc = self.assertJson(self.get("/m/placeholders?which=too-few"), 200)
        self.assertFalse(doc["ok"])
        self.assertEqual((doc["err"]["code"], doc["err"]["kind"]), (2034, "query"), doc)
        self.assertIn("2 placeholders", doc["err"]["message"])

    def test_too_many_values_for_the_placeholders_is_error_2034(self):
        for which in ("too-many", "none-expected"):
            doc = self.assertJson(self.get("/m/placeholders?which=" + which), 200)
            self.assertFalse(doc["ok"], doc)
            self.assertEqual(doc["err"]["code"], 2034, doc)

    def test_uncaught_placeholder_mismatch_is_a_500_with_the_errno_logged(self):
        self.assertServerError(self.get("/m/placeholders-uncaught"))
        self.assertErrorLogged("GET /m/placeholders-uncaught", "errno 2034")

    def test_non_string_sql_is_a_500(self):
        self.assertServerError(self.get("/m/non-string-sql"))
        self.assertErrorLogged("GET /m/non-string-sql", "sql must be a string")

    def test_syntax_error_is_a_query_error_1064(self):
        doc = self.assertJson(self.get("/m/syntax"), 200)
        self.assertFalse(doc["ok"])
        self.assertEqual((doc["err"]["code"], doc["err"]["sqlstate"], doc["err"]["kind"]),
                         (1064, "42000", "query"), doc)
        self.assertIn("errno 1064", doc["err"]["text"], "tostring(err) names the errno")

    def test_pool_is_fine_after_misuse(self):
        for path in ("/m/own-coroutine", "/m/table-param", "/m/placeholders-uncaught"):
            self.assertServerError(self.get(path))
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})
        stats = self.stats()
        self.assertEqual((stats["busy"], stats["waiting"]), (0, 0), stats)


class NoDatabaseConfiguredTest(harness.ServerTestCase):
    """dbapp.lua without a db table in config.lua."""

    config = {"app": "dbapp"}
    scripts = {"dbapp.lua": dbharness.app_source()}

    def test_db_query_without_a_db_table_is_a_500_saying_so(self):
        r = self.request("GET", "/c/quick?v=1")
        self.assertResponse(r, 500, "Internal Server Error\n")
        self.assertLog(lambda log: "no database configured" in error_line(log, "GET /c/quick"),
                       "the 500 does not say the database is not configured")
        self.assertResponse(self.request("GET", "/ping"), 200, "pong")


class LoadTimeOwnCoroutineTest(unittest.TestCase):
    """db.query in a coroutine of the app's own while the app module loads: refused with a message
    naming the rule, so --check and start-up fail."""

    def make_server(self):
        db = dbharness.shared_db()
        cfg = {"app": "toplevel", "db": db.config()}
        server = harness.Server(config=cfg, scripts={"toplevel.lua": TOPLEVEL_APP})
        self.addCleanup(server.cleanup)
        return server

    def test_check_fails_with_a_clear_message(self):
        server = self.make_server()
        r = harness.run_check(server.config_path, cwd=server.dir)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("toplevel.lua:%d" % TOPLEVEL_LINE, out)
        self.assertRegex(out, LOAD_TIME_RE, "the message should say queries belong in handlers")
        self.assertNotIn("no database configured", out, "a db table is configured")

    def test_startup_fails_with_a_clear_message(self):
        # Only the exit counts: since loading runs in a coroutine the port may accept for a moment
        # before the load fails.
        server = self.make_server()
        server.start(wait=False)
        rc = server.wait(10)
        if rc is None:
            server.kill()
            self.fail("squall still runs 10s after the app queried from its own coroutine\n%s"
                      % server.describe())
        server._close_files()
        self.assertEqual(rc, 1, server.describe())
        log = server.log()
        self.assertIn("toplevel.lua:%d" % TOPLEVEL_LINE, log)
        self.assertRegex(log, LOAD_TIME_RE)
        self.assertNotRegex(log, harness.SANITIZER_RE)

if __name__ == "__main__":
    harness.main()
