"""Hot reload driven by the file watcher (`reload = true`): a changed .lua file under the scripts
directory serves within about a second, requests in flight are not disturbed, and files the
watcher must ignore do not reload."""

import os
import threading
import time

import harness
from harness import build_request
from reloadharness import SLOW, ReloadServer, ReloadTestCase, app_source, start_slow


def versioned_app(tag, extra=""):
    return app_source('"%s"' % tag, SLOW % tag + extra)


class WatcherTest(ReloadTestCase):

    def start_server(self, scripts, reload=True, extra_dirs=(), **kw):
        server = ReloadServer(scripts, reload=reload, **kw)
        for d in extra_dirs:    # there before the server starts
            os.makedirs(server.script_path(d), exist_ok=True)
        return self.adopt(server)


    def get(self, path, timeout=harness.IO_TIMEOUT):
        return self.server.request("GET", path, timeout=timeout)

    def assertBody(self, resp, body):
        self.assertEqual((resp.status, resp.body), (200, body.encode()), resp)

    def wait_body(self, path, body, timeout):
        """Seconds until GET path answers 200 `body`; fails after `timeout`. Every answer on the
        way must be a 200."""
        t0 = time.monotonic()
        while True:
            r = self.get(path)
            self.assertEqual(r.status, 200, "%r\n%s" % (r, self.server.describe()))
            if r.body == body.encode():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                self.fail("GET %s still answers %r %.1fs after the change, expected %r\n%s"
                          % (path, r.body, timeout, body, self.server.describe()))
            time.sleep(0.02)

    def assertNoReload(self, settle=1.3):
        time.sleep(settle)    # well past one scan (250 ms) plus the settle time (200 ms)
        st = self.server.status()
        self.assertEqual((st["attempts"], st["generation"]), (0, 0),
                         "a reload ran: %r\n%s" % (st, self.server.log()))
        self.assertEqual(self.server.loading_count(), 0, self.server.log())

    # ---------------------------------------------------------------------------------------

    def test_changed_handler_serves_new_body_within_two_seconds_without_failing_requests(self):
        self.start_server({"app.lua": versioned_app("v1")})
        self.assertBody(self.get("/v"), "v1")

        # Requests that are sleeping when the new code is written and when it takes over.
        sleepers_started = time.monotonic()
        sleepers = [start_slow(self.server, 1.5) for _ in range(4)]
        # And a steady stream of requests on fresh connections across the change.
        stream, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    r = self.get("/v")
                    stream.append((r.status, r.body))
                except Exception as e:   # a failed request is what this test looks for
                    stream.append(("error", repr(e)))

        hammer_thread = threading.Thread(target=hammer, daemon=True)
        hammer_thread.start()

        self.server.write_script("app.lua", versioned_app("v2"))
        took = self.wait_body("/v", "v2", timeout=2.0)
        self.assertLess(took, 2.0)
        self.assertLess(time.monotonic() - sleepers_started, 1.4,
                        "the switch came too late to overlap the sleeping requests")
        for s in sleepers:    # started on v1; they finish there after the switch
            self.assertBody(s.get(10), "slow v1")
        time.sleep(0.1)
        stop.set()
        hammer_thread.join(10)

        bad = [x for x in stream if x not in ((200, b"v1"), (200, b"v2"))]
        self.assertEqual(bad, [], "requests during the change failed\n%s" % self.server.log())
        self.assertIn((200, b"v2"), stream)
        self.assertBody(self.get("/slow?s=0"), "slow v2")
        st = self.server.status()
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": 1}, st)
        self.assertEqual(self.server.serving_generations(), [1], self.server.log())

    def test_keepalive_connection_gets_new_code_after_reload(self):
        self.start_server({"app.lua": versioned_app("before")})
        with self.server.connect() as c:
            c.send(build_request("GET", "/v"))
            self.assertBody(c.read_response(), "before")
            self.server.write_script("app.lua", versioned_app("after"))
            self.wait_body("/v", "after", timeout=2.0)
            c.send(build_request("GET", "/v"))
            self.assertBody(c.read_response(), "after")
            self.assertTrue(c.is_open(), "the keep-alive connection was closed by the reload")

    def test_new_module_in_new_subdirectory_reloads_and_its_changes_serve(self):
        # The app requires the module at its top level when it exists, so every generation
        # loads whatever is on disk at that moment.
        header = 'local has_part, part = pcall(require, "lib.deep.part")\n'
        extra = 'app:get("/part", function(req) return has_part and part.text or "no part" end)\n'
        self.start_server({"app.lua": app_source('"v1"', extra, header)})
        self.assertBody(self.get("/part"), "no part")

        self.server.write_script("lib/deep/part.lua", 'return { text = "part A" }\n')
        st = self.server.wait_attempts(1, timeout=2.0)
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": 1},
                         "a new file in a new subdirectory did not reload\n%s" % self.server.log())
        self.assertBody(self.get("/part"), "part A")

        self.server.write_script("lib/deep/part.lua", 'return { text = "part B, changed" }\n')
        st = self.server.wait_attempts(2, timeout=2.0)
        self.assertEqual(st, {"ok": True, "generation": 2, "attempts": 2},
                         "a changed file in a subdirectory did not reload\n%s" % self.server.log())
        self.assertBody(self.get("/part"), "part B, changed")

    def test_deleting_a_module_reloads_without_it(self):
        header = 'local has_opt, opt = pcall(require, "lib.opt")\n'
        extra = 'app:get("/opt", function(req) return has_opt and opt or "no opt" end)\n'
        self.start_server({"app.lua": app_source('"v1"', extra, header),
                           "lib/opt.lua": 'return "opt here"\n'})
        self.assertBody(self.get("/opt"), "opt here")
        os.remove(self.server.script_path("lib/opt.lua"))
        st = self.server.wait_attempts(1, timeout=2.0)
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": 1}, self.server.log())
        self.assertBody(self.get("/opt"), "no opt")

    def test_hidden_and_non_lua_files_do_not_reload(self):
        self.start_server({"app.lua": versioned_app("v1")}, extra_dirs=("data",))
        self.server.write_script(".app.lua.swp", "binary junk from an editor")
        self.server.write_script(".hidden.lua", "this is not lua (")
        self.server.write_script(".cache/inside_hidden_dir.lua", "return 1\n")
        self.server.write_script("notes.txt", "not a script")
        self.server.write_script("data/readme.md", "# not a script")
        self.assertNoReload()
        self.assertBody(self.get("/v"), "v1")
        # The watcher is alive: a real change still reloads.
        self.server.write_script("app.lua", versioned_app("v2"))
        self.wait_body("/v", "v2", timeout=2.0)
        self.assertEqual(self.server.status()["attempts"], 1)

    def test_new_directory_without_lua_files_does_not_reload(self):
        self.start_server({"app.lua": versioned_app("v1")})
        os.makedirs(self.server.script_path("static/css"))
        self.server.write_script("static/css/site.css", "body { color: black }")
        self.assertNoReload()
        self.assertBody(self.get("/v"), "v1")

    def test_symlinked_directories_are_watched_and_links_back_up_do_not_hang_the_scan(self):
        # A library kept outside scripts/ and linked in is watched like the rest; two links back
        # to scripts/ itself would make a naive scan exponential (main's loop would hang).
        server = ReloadServer({"app.lua": app_source(
            '"v1 " .. require("shared.lib").text')})
        outside = os.path.join(server.dir, "shared-lib")
        os.makedirs(outside)
        with open(os.path.join(outside, "lib.lua"), "w") as f:
            f.write('return { text = "lib A" }\n')
        os.symlink(outside, server.script_path("shared"))
        os.symlink(".", server.script_path("again"))
        os.symlink("..", os.path.join(outside, "up"))
        self.adopt(server)
        self.assertBody(self.get("/v"), "v1 lib A")
        with open(os.path.join(outside, "lib.lua"), "w") as f:
            f.write('return { text = "lib B" }\n')
        self.wait_body("/v", "v1 lib B", timeout=2.0)
        self.server.write_script("app.lua", app_source('"v2"'))
        self.wait_body("/v", "v2", timeout=2.0)

    def test_burst_of_partial_writes_gives_one_reload(self):
        self.start_server({"app.lua": versioned_app("v1")})
        final = versioned_app("v2, after a burst of writes")
        path = self.server.script_path("app.lua")
        # An editor saving in pieces: truncate, then write a bit at a time for ~120 ms. Half a
        # file does not compile; only the settled whole one may be loaded.
        with open(path, "w", encoding="utf-8") as f:
            for i in range(0, len(final), 40):
                f.write(final[i:i + 40])
                f.flush()
                time.sleep(0.012)
        self.wait_body("/v", "v2, after a burst of writes", timeout=2.0)
        time.sleep(1.0)    # anything still pending would have run by now
        st = self.server.status()
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": 1},
                         "the burst gave more than one reload\n%s" % self.server.log())
        self.assertEqual(self.server.loading_count(), 1, self.server.log())

    def test_change_written_while_the_app_loads_at_start_is_picked_up(self):
        def slow_loading_app(tag):
            # Marks that the worker has read this file, then loads for another second.
            header = ('local f = assert(io.open(SCRIPTS .. "/../loading-%s", "w")) f:close()\n'
                      'squall.sleep(1.0)\n') % tag
            return app_source('"%s"' % tag, header=header).replace(
                "local squall", "local SCRIPTS = %r\nlocal squall" % server.scripts_dir, 1)

        server = self.adopt(ReloadServer({}, reload=True), start=False)
        server.write_script("app.lua", slow_loading_app("v1"))
        server.start(wait=False)
        mark = os.path.join(server.dir, "loading-v1")
        deadline = time.monotonic() + 5
        while not os.path.exists(mark):
            self.assertLess(time.monotonic(), deadline, "the app never started loading\n%s"
                            % server.describe())
            time.sleep(0.01)
        server.write_script("app.lua", slow_loading_app("v2"))    # while v1 is still loading
        server.wait_ready()
        server.wait_serving()
        self.wait_body("/v", "v2", timeout=3.0)

    def test_reload_false_ignores_file_changes_but_sighup_reloads(self):
        self.start_server({"app.lua": versioned_app("v1")}, reload=False)
        self.server.write_script("app.lua", versioned_app("v2"))
        self.assertNoReload()
        self.assertBody(self.get("/v"), "v1")
        self.server.sighup()
        self.wait_body("/v", "v2", timeout=2.0)
        self.assertEqual(self.server.status(), {"ok": True, "generation": 1, "attempts": 1})
        self.assertLog("reload: SIGHUP: loading a new generation")
        self.assertLog("reload: generation 1 is serving")

    def test_sighup_without_pid_file_reloads(self):
        self.start_server({"app.lua": versioned_app("v1")}, reload=False, pid_file=None)
        self.server.write_script("app.lua", versioned_app("v2"))
        self.server.sighup()
        self.wait_body("/v", "v2", timeout=2.0)
        self.assertEqual(self.server.status()["generation"], 1)

    def assertLog(self, text):
        log = self.server.wait_for_log(lambda t: text in t, 2.0)
        self.assertIn(text, log)


if __name__ == "__main__":
    harness.main()
