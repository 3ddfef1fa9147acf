"""`squall reload [-c config.lua]` and the pid file: exit 0 and the outcome on success, 2 when the
config has no pid_file, 1 when no server is running; the pid file (relative to the config file)
and its .status companion exist while the server runs and are removed at exit."""

import os
import signal
import subprocess
import time

import harness
from reloadharness import PID_FILE, ReloadServer, ReloadTestCase, app_source


class ReloadCliTest(ReloadTestCase):

    def make_server(self, tag="v1", **kw):
        return self.adopt(ReloadServer({"app.lua": app_source('"%s"' % tag)}, reload=False, **kw),
                          start=False)

    def cli(self, config_path, cwd=None, no_config_arg=False):
        args = [harness.squall_bin(), "reload"]
        if not no_config_arg:
            args += ["-c", config_path]
        return subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=40, text=True, errors="replace")


    # ---------------------------------------------------------------------------------------

    def test_reload_without_pid_file_in_config_exits_2_with_message(self):
        server = self.make_server(pid_file=None)
        server.start()    # a running server does not help: the config cannot name it
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 2, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("pid_file", r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(server.status()["attempts"], 0, "the server was reloaded anyway")
        server.stop()

    def test_reload_with_no_server_ever_started_exits_1_with_message(self):
        server = self.make_server()
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("no running server", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_reload_after_the_server_stopped_exits_1(self):
        server = self.make_server()
        server.start()
        pid_path = server.pid_path
        server.signal(signal.SIGTERM)
        server.expect_clean_exit(10)
        self.assertFalse(os.path.exists(pid_path), "pid file left behind after a clean exit")
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("no running server", r.stderr)

    def test_reload_with_stale_pid_file_of_a_killed_server_exits_1(self):
        server = self.make_server()
        server.start()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()    # reaped: nothing answers to that pid any more
        self.assertTrue(os.path.exists(server.pid_path))
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertNotEqual(r.stderr, "")

    def test_reload_notices_a_server_that_dies_while_it_waits(self):
        server = self.make_server("v1")
        server.start()
        # The new generation's top level waits, so the server is still loading when it dies.
        server.write_script("app.lua", app_source('"v2"', header="squall.sleep(5)\n"))
        cli = harness.ThreadResult(self.cli, server.config_path)
        deadline = time.monotonic() + 10
        while server.loading_count() == 0:
            self.assertLess(time.monotonic(), deadline, "the reload never started")
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()    # reaped, as the server's parent would
        died = time.monotonic()
        r = cli.get(timeout=40)
        self.assertLess(time.monotonic() - died, 5, "the CLI kept waiting for a dead server")
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("exited before it answered", r.stderr)

    def test_reload_reports_the_attempt_that_began_after_its_signal_not_one_already_loading(self):
        server = self.make_server("v1")
        server.start()
        # A reload of a broken version is still loading when the user fixes the file and asks.
        server.write_script("app.lua", app_source('"v2"', header="io.stderr:write('v2 was read\\n')\n"
                                                               "squall.sleep(1)\nerror('v2 is broken')\n"))
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "v2 was read" not in server.log():
            self.assertLess(time.monotonic(), deadline, "the first reload never read v2")
            time.sleep(0.02)
        # v3 loads slowly too, so the failed verdict is on view for a while before v3's.
        server.write_script("app.lua", app_source('"v3"', header="squall.sleep(0.5)\n"))
        r = self.cli(server.config_path)
        self.assertEqual((r.returncode, r.stderr), (0, ""), "reported the broken reload already "
                         "loading instead of its own: %r" % r.stdout)
        self.assertIn("generation 1 is serving", r.stdout)
        self.assertServes("v3")
        # The CLI's signal came while v2 was loading (else this test proves nothing): it was
        # queued behind it, and v2's failure is the one verdict the CLI had to pass over.
        log = server.log()
        self.assertIn("asked for again during the last reload: loading", log)
        self.assertEqual(log.count("reload failed"), 1, log)
        self.assertEqual(server.loading_count(), 2)
        self.assertEqual(server.status(), {"ok": True, "generation": 1, "attempts": 2})
        server.stop()

    def test_pid_file_is_relative_to_config_and_removed_at_exit_with_its_status_file(self):
        server = self.make_server()
        server.start(cwd="/")    # not the config's directory
        pid_path = os.path.join(server.dir, PID_FILE)
        self.assertEqual(server.pid_path, pid_path)
        with open(pid_path) as f:
            self.assertEqual(f.read().strip(), str(server.proc.pid))
        self.assertTrue(os.path.exists(pid_path + ".status"), os.listdir(os.path.dirname(pid_path)))
        self.assertFalse(os.path.exists(os.path.join("/", PID_FILE)))
        server.signal(signal.SIGTERM)
        server.expect_clean_exit(10)
        self.assertEqual(os.listdir(os.path.dirname(pid_path)), [],
                         "the pid file or its status file outlived the server")

    def test_successful_reload_prints_outcome_and_exits_0_from_any_directory(self):
        server = self.make_server("v1")
        server.start()
        server.write_script("app.lua", app_source('"v2"'))
        r = self.cli(server.config_path, cwd="/")
        self.assertEqual((r.returncode, r.stderr), (0, ""), r.stdout)
        self.assertIn("generation 1 is serving", r.stdout)
        self.assertServes("v2")
        log = server.log()
        self.assertRegex(log, r"\[info\] reload: .*loading a new generation")
        self.assertIn("reload: generation 1 is serving", log)
        server.write_script("app.lua", app_source('"v3"'))
        r = self.cli(server.config_path, cwd="/")
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("generation 2 is serving", r.stdout)
        self.assertServes("v3")
        self.assertEqual(server.status(), {"ok": True, "generation": 2, "attempts": 2})
        server.stop()

    def test_reload_without_c_uses_config_lua_of_the_current_directory(self):
        server = self.make_server("v1")
        server.start()
        server.write_script("app.lua", app_source('"v2"'))
        r = self.cli(None, cwd=server.dir, no_config_arg=True)
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("generation 1 is serving", r.stdout)
        self.assertServes("v2")
        server.stop()

    def test_check_against_a_running_servers_config_leaves_its_pid_file_alone(self):
        server = self.make_server("v1")
        server.start()
        with open(server.pid_path) as f:
            pid_text = f.read()
        r = harness.run_check(server.config_path)
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        with open(server.pid_path) as f:
            self.assertEqual(f.read(), pid_text)
        self.assertTrue(os.path.exists(server.pid_path + ".status"))
        server.write_script("app.lua", app_source('"v2"'))
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 0, "%r %r" % (r.stdout, r.stderr))
        self.assertServes("v2")
        server.stop()

    def test_wrong_types_for_reload_and_pid_file_stop_start_up_naming_the_key(self):
        for key, value in (("reload", "yes"), ("pid_file", 5)):
            server = self.make_server(config={key: value})
            r = harness.run_check(server.config_path)
            self.assertEqual(r.returncode, 1, "%s: %r %r" % (key, r.stdout, r.stderr))
            self.assertIn(key, r.stderr)

    def test_failed_reload_exits_1_with_error_on_stderr_and_nothing_on_stdout(self):
        server = self.make_server("v1")
        server.start()
        server.write_script("app.lua", 'local squall = require "squall"\nreturn squall.app(\n')
        r = self.cli(server.config_path)
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("app.lua:", r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertServes("v1")
        server.stop()


if __name__ == "__main__":
    harness.main()
