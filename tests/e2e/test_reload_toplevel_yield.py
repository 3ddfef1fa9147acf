"""A module's top level may yield (loading runs in a coroutine): an app that queries the database
at its top level and requires a module that calls squall.sleep passes `squall --check`, starts,
serves what it loaded, and does it all again on each reload. A load that fails after such a yield
is an ordinary failed reload: the server keeps serving and reports the error."""

import os
import time

import dbharness
import harness
import reloadharness
from reloadharness import ReloadServer, ReloadTestCase

WARM = ('local squall = require "squall"\n'
        'squall.sleep(0.01)\n'
        'return { value = "%s" }\n')

APP = ('local squall = require "squall"\n'
       'local db = require "squall.db"\n'
       'local warm = require "lib.warm"\n'
       'local rows = db.query("SELECT %d AS n")\n'
       'local N = rows[1].n\n'
       'local app = squall.app()\n'
       + reloadharness.STATUS_ROUTE +
       'app:get("/n", function(req) return "n=" .. N .. " warm=" .. warm.value end)\n'
       'return app\n')

# Fails after yielding: line 3 raises once the sleep or the query has come back.
FAIL_AFTER_SLEEP = ('local squall = require "squall"\n'
                    'squall.sleep(0.01)\n'
                    'error("refused after sleeping")\n')
FAIL_AFTER_QUERY = ('local squall = require "squall"\n'
                    'local db = require "squall.db"\n'
                    'local rows = db.query("SELECT 1 AS one") error("refused after a query")\n')
# The query itself fails (line 3): a database error object raised at the top level.
FAILING_QUERY = ('local squall = require "squall"\n'
                 'local db = require "squall.db"\n'
                 'local rows = db.query("SELECT n FROM t_reload_no_such_table_%d")\n'
                 % os.getpid())


class TopLevelYieldTest(ReloadTestCase):

    @classmethod
    def setUpClass(cls):
        cls.database = dbharness.shared_db()

    def make_server(self, n=42, warm="slept", reload=False):
        server = ReloadServer({"app.lua": APP % n, "lib/warm.lua": WARM % warm}, reload=reload,
                              config={"db": self.database.config()})
        return self.adopt(server, start=False)


    def assertServes(self, body):
        super().assertServes(body, "/n")

    def assertCheck(self, rc, fragments=()):
        r = harness.run_check(self.server.config_path)
        self.assertEqual(r.returncode, rc, "squall --check: %r %r" % (r.stdout, r.stderr))
        self.assertNotRegex(r.stderr, harness.SANITIZER_RE)
        for f in fragments:
            self.assertIn(f, r.stderr)
        return r

    # ---------------------------------------------------------------------------------------

    def test_app_querying_and_sleeping_at_top_level_passes_check_starts_and_serves(self):
        server = self.make_server()
        r = self.assertCheck(0)
        self.assertIn("configuration and scripts are ok", r.stdout)
        server.start()
        self.assertServes("n=42 warm=slept")

    def test_top_level_query_and_sleep_run_again_on_each_reload(self):
        server = self.make_server(reload=False)
        server.start()
        self.assertServes("n=42 warm=slept")
        for gen, n in ((1, 43), (2, 44)):
            server.write_script("app.lua", APP % n)
            server.write_script("lib/warm.lua", WARM % ("slept again %d" % gen))
            r = server.cli_reload()
            self.assertEqual(r.returncode, 0, "%r %r\n%s" % (r.stdout, r.stderr, server.log()))
            self.assertIn("generation %d is serving" % gen, r.stdout)
            self.assertServes("n=%d warm=slept again %d" % (n, gen))
        self.assertCheck(0)

    def test_watcher_reload_runs_top_level_query_again(self):
        server = self.make_server(reload=True)
        server.start()
        server.write_script("app.lua", APP % 77)
        st = server.wait_attempts(1, timeout=2.0)
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": 1}, server.log())
        self.assertServes("n=77 warm=slept")

    def test_check_reports_errors_after_top_level_yields_and_exits_1(self):
        server = self.make_server()
        for text, fragment in ((FAIL_AFTER_SLEEP, "refused after sleeping"),
                               (FAIL_AFTER_QUERY, "refused after a query"),
                               (FAILING_QUERY, "t_reload_no_such_table")):
            with self.subTest(fragment=fragment):
                server.write_script("app.lua", text)
                self.assertCheck(1, ["app.lua:3:", fragment])

    def check_failed_reload(self, text, where, fragment):
        server = self.make_server()
        server.start()
        server.write_script("app.lua", text)
        r = server.cli_reload(timeout=15)
        time.sleep(0.2)    # the worker carries on right after reporting its failure
        self.assertTrue(server.running(), "squall died during the failed reload\n%s"
                        % server.describe())
        self.assertEqual(r.returncode, 1, "%r %r\n%s" % (r.stdout, r.stderr, server.log()))
        self.assertIn(where, r.stderr)
        self.assertIn(fragment, r.stderr)
        self.assertServes("n=42 warm=slept")
        st = server.status()
        self.assertEqual((st["ok"], st["generation"], st["attempts"]), (False, 0, 1), st)
        self.assertIn(where, st.get("error", ""))
        self.assertIn(fragment, st["error"])
        # And the same code fails --check with the same report (exit 1, no crash).
        self.assertCheck(1, [where, fragment])
        # The server is fine afterwards: a good reload works.
        server.write_script("app.lua", APP % 43)
        r = server.cli_reload()
        self.assertEqual(r.returncode, 0, "%r %r\n%s" % (r.stdout, r.stderr, server.log()))
        self.assertServes("n=43 warm=slept")

    def test_error_after_top_level_sleep_fails_the_reload_and_keeps_serving(self):
        self.check_failed_reload(FAIL_AFTER_SLEEP, "app.lua:3:", "refused after sleeping")

    def test_error_after_top_level_query_fails_the_reload_and_keeps_serving(self):
        self.check_failed_reload(FAIL_AFTER_QUERY, "app.lua:3:", "refused after a query")

    def test_failing_top_level_query_fails_the_reload_with_the_database_error(self):
        self.check_failed_reload(FAILING_QUERY, "app.lua:3:", "t_reload_no_such_table")


if __name__ == "__main__":
    harness.main()
