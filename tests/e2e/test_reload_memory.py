"""Reloading many times leaks nothing: every retired generation's Lua state is closed once its
last request ends. The plain build is measured by RSS (VmRSS after a warm-up); the ASan build
(SQUALL_BIN=.../squall-asan, as ctest runs it) does fewer reloads and relies on LeakSanitizer and
the clean exit that harness checks (its allocator keeps freed memory, so RSS says nothing)."""

import time

import harness
import reloadharness
from reloadharness import ReloadServer, ReloadTestCase

ASAN = reloadharness.is_asan_binary()
RELOADS = 50 if ASAN else 200
WARMUP = 10
RSS_SLACK_KIB = 8 * 1024

# Each generation holds about a megabyte of module-level data, so one leaked state per reload
# would show as hundreds of MiB.
APP = ('local squall = require "squall"\n'
       'local big = {}\n'
       'for i = 1, 20000 do big[i] = "entry number " .. i end\n'
       '%s'
       'local app = squall.app()\n'
       + reloadharness.STATUS_ROUTE +
       'app:get("/v", function(req) return "%s " .. #big end)\n'
       'app:get("/slow", function(req) squall.sleep(tonumber(req.query.s)) return "slow %s" end)\n'
       'return app\n')


def app_of(tag, top=""):
    return APP % (top, tag, tag)


class ReloadMemoryTest(ReloadTestCase):

    def start_server(self, text, **config):
        return self.adopt(ReloadServer({"app.lua": text}, reload=False, config=config))


    def reload_and_wait(self, attempts, timeout=10):
        """SIGHUP, then poll reload_status() until `attempts` reloads have ended."""
        self.server.sighup()
        st = self.server.wait_status(lambda s: s["attempts"] >= attempts, timeout, 0.005)
        self.assertEqual(st["attempts"], attempts, "reload %d did not finish\n%s"
                         % (attempts, self.server.describe()))
        return st

    def assertRssKept(self, before, after, what):
        if ASAN:
            return
        self.assertLess(after - before, RSS_SLACK_KIB,
                        "RSS grew from %d KiB to %d KiB over %s\n%s"
                        % (before, after, what, self.server.log()[-2000:]))

    # ---------------------------------------------------------------------------------------

    def test_many_successful_reloads_with_requests_between_leak_nothing(self):
        server = self.start_server(app_of("g0"))
        self.assertServes("g0 20000")
        attempts = 0
        rss_before = None
        for i in range(WARMUP + RELOADS):
            if i == WARMUP:
                rss_before = server.rss_kib()
            tag = "g%d" % (i + 1)
            server.write_script("app.lua", app_of(tag))
            # Every fifth reload has a request asleep on the old generation meanwhile, so that
            # generation is retired and closed only after the switch.
            sleeper = (harness.ThreadResult(server.request, "GET", "/slow?s=0.05")
                       if i % 5 == 0 else None)
            if sleeper:
                time.sleep(0.01)
            attempts += 1
            st = self.reload_and_wait(attempts)
            self.assertEqual((st["ok"], st["generation"]), (True, attempts), st)
            self.assertServesSoon("%s 20000" % tag)
            if sleeper:
                r = sleeper.get()
                self.assertEqual(r.status, 200, r)
                self.assertIn(r.body, (b"slow g%d" % i, b"slow " + tag.encode()))
        time.sleep(0.2)
        rss_after = server.rss_kib()
        self.assertRssKept(rss_before, rss_after, "%d reloads" % RELOADS)
        self.assertEqual(server.serving_generations(), list(range(1, attempts + 1)))

    def test_many_failed_reloads_leak_nothing(self):
        server = self.start_server(app_of("good"))
        broken = app_of("broken", top='error("refusing to load after building the table")\n')
        server.write_script("app.lua", broken)
        n = RELOADS // 2
        rss_before = None
        for i in range(WARMUP + n):
            if i == WARMUP:
                rss_before = server.rss_kib()
            st = self.reload_and_wait(i + 1)
            self.assertEqual((st["ok"], st["generation"]), (False, 0), st)
            self.assertServes("good 20000")
        time.sleep(0.2)
        self.assertRssKept(rss_before, server.rss_kib(), "%d failed reloads" % n)

    def test_reloads_of_an_app_whose_top_level_spawns_a_loop_leak_no_generation(self):
        # A module-level refresh loop never ends by itself: retiring its generation ends it.
        loop = "squall.spawn(function() while true do squall.sleep(0.005) end end)\n"
        server = self.start_server(app_of("l0", top=loop))
        rss_before = None
        for i in range(WARMUP + RELOADS // 2):
            if i == WARMUP:
                rss_before = server.rss_kib()
            tag = "l%d" % (i + 1)
            server.write_script("app.lua", app_of(tag, top=loop))
            st = self.reload_and_wait(i + 1)
            self.assertEqual((st["ok"], st["generation"]), (True, i + 1), st)
            self.assertServesSoon("%s 20000" % tag)
        time.sleep(0.2)
        self.assertRssKept(rss_before, server.rss_kib(), "%d reloads" % (RELOADS // 2))

    def test_reloads_requested_while_loading_leak_no_generation(self):
        # Loading sleeps 50 ms at the top level, and a second SIGHUP comes in meanwhile: the
        # loaded generation is committed and another load starts right after.
        server = self.start_server(app_of("o0", top="squall.sleep(0.05)\n"))
        pairs = RELOADS // 5
        rss_before = None
        for i in range(WARMUP + pairs):
            if i == WARMUP:
                rss_before = server.rss_kib()
            tag = "o%d" % (i + 1)
            server.write_script("app.lua", app_of(tag, top="squall.sleep(0.05)\n"))
            server.sighup()
            time.sleep(0.015)
            st = self.reload_and_wait(2 * (i + 1))
            self.assertEqual((st["ok"], st["generation"]), (True, 2 * (i + 1)), st)
            self.assertServesSoon("%s 20000" % tag)
            for _ in range(4):
                self.assertServes("%s 20000" % tag)
        time.sleep(0.2)
        self.assertRssKept(rss_before, server.rss_kib(), "%d overlapping reload pairs" % pairs)


if __name__ == "__main__":
    harness.main()
