"""Generations: a request finishes on the code it started on (waiting in the database or in
squall.sleep across one or more reloads) while new requests get the new code; module-level state
starts fresh in each generation (documented: keep no per-request state in module variables); a
loop spawned at a module's top level ends with its generation, and at shutdown, --check and the
end of `squall test`; a reload asked for while one is loading runs once more afterwards."""

import os
import subprocess
import time

import dbharness
import harness
import reloadharness
from reloadharness import ReloadServer, ReloadTestCase


def sleeper_app(tag, mark_dir):
    """GET /v answers `tag`; GET /slow-db runs SELECT SLEEP(s) and GET /slow-sleep calls
    squall.sleep(s); both answer `<tag> ...` once done. /slow-sleep first touches a mark file
    so the test knows it is inside the sleep."""
    return ('local squall = require "squall"\n'
            'local db = require "squall.db"\n'
            'local app = squall.app()\n'
            + reloadharness.STATUS_ROUTE +
            'local TAG = "%s"\n'
            'app:get("/v", function(req) return TAG end)\n'
            'app:get("/slow-db", function(req)\n'
            '  local rows = db.query("SELECT SLEEP(?) AS " .. req.query.alias, tonumber(req.query.s))\n'
            '  return TAG .. " code after SELECT SLEEP: " .. tostring(rows[1][req.query.alias])\n'
            'end)\n'
            'app:get("/slow-sleep", function(req)\n'
            '  local f = assert(io.open("%s/" .. req.query.mark, "w")) f:close()\n'
            '  squall.sleep(tonumber(req.query.s))\n'
            '  return TAG .. " code after squall.sleep"\n'
            'end)\n'
            'return app\n') % (tag, mark_dir)


class ServerCase(ReloadTestCase):

    def start_server(self, scripts, app=None, **kw):
        """app: a function of the server's marks directory giving app.lua's text."""
        server = self.adopt(ReloadServer(scripts, **kw), start=False)
        self.marks = os.path.join(server.dir, "marks")
        os.makedirs(self.marks)
        if app is not None:
            server.write_script("app.lua", app(self.marks))
        server.start()
        return server


    def get(self, path, timeout=harness.IO_TIMEOUT):
        return self.server.request("GET", path, timeout=timeout)

    def assertBody(self, resp, body):
        self.assertEqual((resp.status, resp.body), (200, body.encode()),
                         "%r\n%s" % (resp, self.server.log()[-3000:]))

    def reload_ok(self, generation):
        """`squall reload` (which waits for the outcome) reports `generation` serving."""
        r = self.server.cli_reload()
        self.assertEqual(r.returncode, 0, "squall reload failed: %r %r\n%s"
                         % (r.stdout, r.stderr, self.server.log()))
        self.assertIn("generation %d is serving" % generation, r.stdout)


class InFlightRequestsFinishOnTheirGenerationTest(ServerCase):

    def test_request_waiting_in_the_database_finishes_with_old_code_after_the_switch(self):
        database = dbharness.shared_db()
        server = self.start_server({}, lambda marks: sleeper_app("old", marks), reload=False,
                                   config={"db": database.config()})
        marks = self.marks
        self.assertBody(self.get("/v"), "old")

        alias = "reload_inflight_%d" % os.getpid()
        sleeper = harness.ThreadResult(self.get, "/slow-db?s=2&alias=" + alias, 10)
        started = time.monotonic()
        _, seen = dbharness.poll(lambda: database.processlist("%SLEEP%" + alias + "%"), bool, 3, 0.05)
        self.assertTrue(seen[-1], "the SLEEP query never showed in the processlist")

        server.write_script("app.lua", sleeper_app("new", marks))
        self.reload_ok(1)
        self.assertBody(self.get("/v"), "new")      # a parallel request, on the new code
        self.assertLess(time.monotonic() - started, 1.8,
                        "the switch did not happen while the query was still sleeping")
        self.assertTrue(sleeper._t.is_alive(), "the query finished before the switch")
        self.assertBody(sleeper.get(10), "old code after SELECT SLEEP: 0")
        self.assertBody(self.get("/slow-db?s=0&alias=" + alias), "new code after SELECT SLEEP: 0")
        self.assertEqual(server.status(), {"ok": True, "generation": 1, "attempts": 1})

    def test_request_in_squall_sleep_finishes_with_old_code_across_two_reloads(self):
        server = self.start_server({}, lambda marks: sleeper_app("v1", marks), reload=False)
        marks = self.marks

        sleepers = []
        for i in range(4):    # on both workers, most likely
            mark = "sleeping-%d" % i
            sleepers.append(harness.ThreadResult(self.get, "/slow-sleep?s=2&mark=" + mark, 10))
        started = time.monotonic()
        for i in range(4):
            _, seen = dbharness.poll(
                lambda: os.path.exists(os.path.join(marks, "sleeping-%d" % i)), bool, 3, 0.01)
            self.assertTrue(seen[-1], "/slow-sleep never started")

        server.write_script("app.lua", sleeper_app("v2", marks))
        self.reload_ok(1)
        self.assertBody(self.get("/v"), "v2")
        server.write_script("app.lua", sleeper_app("v3", marks))
        self.reload_ok(2)
        self.assertBody(self.get("/v"), "v3")
        self.assertLess(time.monotonic() - started, 1.8,
                        "the reloads did not happen while the requests were sleeping")
        for s in sleepers:
            self.assertBody(s.get(10), "v1 code after squall.sleep")
        self.assertBody(self.get("/slow-sleep?s=0&mark=after"), "v3 code after squall.sleep")


def ticker_app(tag, mark_dir):
    """Its top level spawns a loop that appends a line to marks/tick-<tag> every 10 ms."""
    return ('local squall = require "squall"\n'
            'local app = squall.app()\n'
            + reloadharness.STATUS_ROUTE +
            'squall.spawn(function()\n'
            '  while true do\n'
            '    local f = assert(io.open("%s/tick-%s", "a")) f:write("t\\n") f:close()\n'
            '    squall.sleep(0.01)\n'
            '  end\n'
            'end)\n'
            'app:get("/v", function(req) return "%s" end)\n'
            'return app\n') % (mark_dir, tag, tag)


# A long-poll loop at the top level: it always has a query out.
POLLING_APP = ('local squall = require "squall"\n'
               'local db = require "squall.db"\n'
               'local app = squall.app()\n'
               + reloadharness.STATUS_ROUTE +
               'squall.spawn(function()\n'
               '  while true do db.query("SELECT SLEEP(0.2)") end\n'
               'end)\n'
               'app:get("/v", function(req) return "polling" end)\n'
               'return app\n')

LOOP_SPEC = ('local t = require "squall.test"\n'
             'describe("an app with a polling loop", function()\n'
             '  it("serves", function()\n'
             '    assert.equal("polling", t.client():get("/v").body)\n'
             '  end)\n'
             'end)\n')


class BackgroundTasksTest(ServerCase):

    def ticks(self, tag, at_least=0):
        """Lines in marks/tick-<tag>, once there are `at_least`."""
        def count():
            try:
                with open(os.path.join(self.marks, "tick-" + tag)) as f:
                    return f.read().count("\n")
            except FileNotFoundError:
                return 0
        _, seen = dbharness.poll(count, lambda n: n >= at_least, 5, 0.01)
        self.assertGreaterEqual(seen[-1], at_least, "the %s loop is not ticking" % tag)
        return seen[-1]

    def test_a_loop_spawned_at_the_top_level_ends_with_its_generation(self):
        # Otherwise it would keep the retired generation, and its Lua state, alive for good.
        server = self.start_server({}, lambda marks: ticker_app("g0", marks), reload=False)
        self.ticks("g0", at_least=3)
        server.write_script("app.lua", ticker_app("g1", self.marks))
        self.reload_ok(1)
        self.assertBody(self.get("/v"), "g1")
        self.ticks("g1", at_least=3)
        stopped = self.ticks("g0")
        time.sleep(0.3)   # 30 ticks' time
        self.assertEqual(self.ticks("g0"), stopped, "the retired generation's loop still runs")
        self.ticks("g1", at_least=self.ticks("g1") + 3)

    def test_a_request_waiting_on_a_top_level_task_gets_an_error_when_a_reload_stops_it(self):
        def app(tag):
            return lambda marks: (
                'local squall = require "squall"\n'
                'local app = squall.app()\n'
                + reloadharness.STATUS_ROUTE +
                'local warm = squall.spawn(function() squall.sleep(5) return "warm" end)\n'
                'app:get("/v", function(req) return "%s" end)\n'
                'app:get("/warm", function(req)\n'
                '  assert(io.open("%s/warming", "w")):close()\n'
                '  local ok, err = pcall(warm.wait, warm)\n'
                '  return ok and err or ("failed: " .. tostring(err))\n'
                'end)\n'
                'return app\n') % (tag, marks)
        server = self.start_server({}, app("g0"), reload=False)
        waiter = harness.ThreadResult(self.get, "/warm", 10)
        _, seen = dbharness.poll(lambda: os.path.exists(os.path.join(self.marks, "warming")),
                                 bool, 5, 0.01)
        self.assertTrue(seen[-1], "/warm never started")
        server.write_script("app.lua", app("g1")(self.marks))
        started = time.monotonic()
        self.reload_ok(1)
        r = waiter.get(10)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"failed: squall.spawn: the task was stopped before it finished", r.body)
        self.assertLess(time.monotonic() - started, 4, "the request waited for the task's sleep")
        self.assertBody(self.get("/v"), "g1")

    def test_a_top_level_loop_waiting_on_the_database_does_not_hold_up_shutdown(self):
        # A long-poll loop always has a query out; the drain waits for outstanding queries, so
        # without ending the loop every SIGTERM would last until shutdown_timeout.
        database = dbharness.shared_db()
        server = self.start_server({"app.lua": POLLING_APP}, reload=False,
                                   config={"db": database.config(), "shutdown_timeout": 20})
        self.assertBody(self.get("/v"), "polling")
        started = time.monotonic()
        server.signal()
        server.expect_clean_exit(25)
        took = time.monotonic() - started
        self.assertLess(took, 5, "the drain waited %.1fs for the loop's queries" % took)

    def test_check_and_squall_test_end_although_a_top_level_loop_waits_on_the_database(self):
        # Neither has a shutdown_timeout to end the wait: before, both hung.
        server = harness.Server(config={"db": dbharness.shared_db().config()}, copy_app=False,
                                scripts={"app.lua": POLLING_APP, "loop_spec.lua": LOOP_SPEC})
        self.addCleanup(server.cleanup)
        r = harness.run_check(server.config_path, cwd=server.dir, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        p = subprocess.run([harness.squall_bin(), "test", "-c", server.config_path,
                            os.path.join(server.dir, "scripts", "loop_spec.lua")],
                           cwd=server.dir, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("1 success", p.stdout + p.stderr)


def conn_app(tag):
    return ('local squall = require "squall"\n'
            'local db = require "squall.db"\n'
            'local app = squall.app()\n'
            + reloadharness.STATUS_ROUTE +
            'app:get("/conn", function(req)\n'
            '  local id = db.query("SELECT CONNECTION_ID() AS id")[1].id\n'
            '  return { tag = "%s", id = id, queries = db.stats().queries }\n'
            'end)\n'
            'return app\n') % tag


class DatabasePoolKeptTest(ServerCase):

    def test_reload_keeps_the_database_connection_and_pool_stats(self):
        database = dbharness.shared_db()
        server = self.start_server({"app.lua": conn_app("g0")}, reload=False,
                                   config={"db": database.config(pool_size=1)})
        before = [self.get("/conn").json() for _ in range(3)]
        self.assertEqual({d["tag"] for d in before}, {"g0"})
        ids = {d["id"] for d in before}
        self.assertEqual(len(ids), 1, before)
        server.write_script("app.lua", conn_app("g1"))
        self.reload_ok(1)
        after = self.get("/conn").json()
        self.assertEqual(after["tag"], "g1")
        self.assertEqual({after["id"]}, ids, "the reload replaced the database connection")
        self.assertGreater(after["queries"], before[-1]["queries"], "the pool's stats restarted")


COUNTER_STORE = "return { hits = 0 }\n"


def counter_app(tag, fail=False):
    return ('local squall = require "squall"\n'
            'local store = require "counter_store"\n'
            '%s'
            'local app = squall.app()\n'
            + reloadharness.STATUS_ROUTE +
            'local count = 0\n'
            'app:get("/count", function(req)\n'
            '  count = count + 1\n'
            '  store.hits = store.hits + 1\n'
            '  return "%s count=" .. count .. " hits=" .. store.hits\n'
            'end)\n'
            'return app\n') % ('error("refusing to load")\n' if fail else "", tag)


class ModuleStateTest(ServerCase):
    """Module-level variables live in one generation's Lua state: a reload starts them over."""

    def test_module_level_counter_starts_fresh_after_reload_and_survives_a_failed_one(self):
        server = self.start_server({"app.lua": counter_app("g0"), "counter_store.lua": COUNTER_STORE},
                                   reload=False, config={"workers": 1})
        for n in (1, 2, 3):
            self.assertBody(self.get("/count"), "g0 count=%d hits=%d" % (n, n))

        self.reload_ok(1)    # the same code again: the state still starts over
        for n in (1, 2):
            self.assertBody(self.get("/count"), "g0 count=%d hits=%d" % (n, n))

        server.write_script("app.lua", counter_app("g2"))
        self.reload_ok(2)
        self.assertBody(self.get("/count"), "g2 count=1 hits=1")

        # A failed reload leaves the serving generation, and its state, alone.
        server.write_script("app.lua", counter_app("bad", fail=True))
        r = server.cli_reload()
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertBody(self.get("/count"), "g2 count=2 hits=2")


class OverlappingReloadsTest(ServerCase):

    def test_reload_requested_while_loading_runs_once_more_and_serves_the_latest_code(self):
        # Loading takes 0.5 s (a sleep at the top level), so the second SIGHUP lands mid-load.
        def slow_app(tag):
            return reloadharness.app_source('"%s"' % tag, header='squall.sleep(0.5)\n')

        server = self.start_server({"app.lua": slow_app("v0")}, reload=False)
        for round_, (first, second) in enumerate([("v1", "v2"), ("v3", "v4"), ("v5", "v6")]):
            base = round_ * 2
            server.write_script("app.lua", slow_app(first))
            server.sighup()
            time.sleep(0.15)
            server.write_script("app.lua", slow_app(second))
            server.sighup()
            # Once reload_status() reports the first of the two as serving, no request may get
            # older code, on any worker, while the second one loads.
            stale = []
            deadline = time.monotonic() + 5
            while True:
                st = server.status()
                if st["attempts"] >= base + 2 or time.monotonic() > deadline:
                    break
                if st["generation"] >= base + 1:
                    body = self.get("/v").body
                    if body not in (first.encode(), second.encode()):
                        stale.append((st["generation"], body))
                time.sleep(0.005)
            self.assertEqual(stale[:10], [], "%d requests got old code after generation %d was "
                             "reported serving\n%s" % (len(stale), base + 1, server.log()))
            self.assertEqual(st, {"ok": True, "generation": base + 2, "attempts": base + 2},
                             server.log())
            # Every worker serves the latest code (new connections spread over the workers).
            bodies = {self.get("/v").body for _ in range(12)}
            self.assertEqual(bodies, {second.encode()}, server.log())
        time.sleep(0.8)
        self.assertEqual(server.status()["attempts"], 6, "an extra reload ran\n" + server.log())
        self.assertEqual(server.loading_count(), 6, server.log())


if __name__ == "__main__":
    harness.main()
