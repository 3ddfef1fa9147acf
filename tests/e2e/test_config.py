"""config.lua and `squall --check`: good configs, defaults, relative paths, bad keys and types,
broken scripts; the same errors stop a real start-up."""

import os
import shutil
import socket
import tempfile
import time
import unittest

import harness
from harness import Lua, Server, run_check

SYNTAX_ERROR_APP = """local squall = require "squall"
local app = squall.app()
app:get("/", function(req)
  return "x" +
end)
return app
"""
SYNTAX_ERROR_LINE = 5    # Lua reports the unexpected 'end'

LOAD_ERROR_APP = """local squall = require "squall"
local app = squall.app()
error("failure while loading the app")
return app
"""
LOAD_ERROR_LINE = 3


class CheckTest(unittest.TestCase):

    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
            s.cleanup()

    def make(self, config=None, config_src=None, scripts=None, copy_app=True):
        s = Server(config=config, config_src=config_src, scripts=scripts, copy_app=copy_app)
        self.servers.append(s)
        return s

    def check(self, server, cwd=None, config_arg="abs"):
        path = server.config_path if config_arg == "abs" else config_arg
        return run_check(path, cwd=cwd or server.dir)

    def assertCheckOk(self, res):
        out = res.stdout + res.stderr
        self.assertEqual(res.returncode, 0, out)
        self.assertIn("ok", out.lower())

    def assertCheckFails(self, res, *needles):
        self.assertNotEqual(res.returncode, 0, "stdout: %s\nstderr: %s" % (res.stdout, res.stderr))
        self.assertGreater(res.returncode, 0, "killed by a signal? %s" % res.stderr)
        self.assertTrue(res.stderr.strip(), "no message on stderr")
        for n in needles:
            self.assertIn(n, res.stderr)

    # -- good configs

    def test_check_accepts_good_config(self):
        self.assertCheckOk(self.check(self.make()))

    def test_check_uses_config_lua_in_current_directory_by_default(self):
        s = self.make()
        res = run_check(None, cwd=s.dir)
        self.assertCheckOk(res)

    def test_paths_are_relative_to_config_directory(self):
        s = self.make()
        elsewhere = tempfile.mkdtemp(prefix="squall-e2e-cwd-")
        try:
            self.assertCheckOk(run_check(s.config_path, cwd=elsewhere))
            rel = os.path.relpath(s.config_path, elsewhere)
            self.assertCheckOk(run_check(rel, cwd=elsewhere))
        finally:
            shutil.rmtree(elsewhere, ignore_errors=True)

    def test_check_accepts_every_documented_key(self):
        s = self.make(config={
            "workers": 3, "debug": True, "shutdown_timeout": 2.5,
            "limits": {"max_header_bytes": 8192, "max_body_bytes": 4096,
                       "max_connections": 100, "header_timeout": 0.5, "body_timeout": 1.5,
                       "keepalive_timeout": 2},
            "log": {"level": "debug", "error": "err.log", "access": "acc.log"}})
        self.assertCheckOk(self.check(s))

    def test_check_accepts_minimal_config(self):
        s = self.make(config_src='return { listen = "127.0.0.1:{port}" }\n')
        self.assertCheckOk(self.check(s))

    def test_check_accepts_other_scripts_dir_and_app_name(self):
        s = self.make(copy_app=False, config={"scripts": "handlers", "app": "main_app"})
        os.makedirs(os.path.join(s.dir, "handlers"))
        shutil.copy(os.path.join(harness.APP_DIR, "app.lua"),
                    os.path.join(s.dir, "handlers", "main_app.lua"))
        shutil.copy(os.path.join(harness.APP_DIR, "e2e_util.lua"), os.path.join(s.dir, "handlers"))
        self.assertCheckOk(self.check(s))

    # -- broken scripts

    def test_check_reports_syntax_error_with_file_and_line(self):
        s = self.make(scripts={"app.lua": SYNTAX_ERROR_APP})
        self.assertCheckFails(self.check(s), "app.lua:%d" % SYNTAX_ERROR_LINE)

    def test_check_reports_load_time_error_with_file_and_line(self):
        s = self.make(scripts={"app.lua": LOAD_ERROR_APP})
        self.assertCheckFails(self.check(s), "app.lua:%d" % LOAD_ERROR_LINE,
                              "failure while loading the app")

    def test_check_reports_missing_app_module(self):
        s = self.make(config={"app": "no_such_module"})
        self.assertCheckFails(self.check(s), "no_such_module")

    def test_check_reports_missing_scripts_dir(self):
        s = self.make(config={"scripts": "no_such_dir"})
        self.assertCheckFails(self.check(s))

    # -- broken config

    def test_check_reports_missing_config_file(self):
        d = tempfile.mkdtemp(prefix="squall-e2e-")
        try:
            res = run_check(os.path.join(d, "nope.lua"), cwd=d)
            self.assertCheckFails(res, "nope.lua")
            res = run_check(None, cwd=d)    # no ./config.lua either
            self.assertCheckFails(res)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_check_reports_config_syntax_error_with_line(self):
        s = self.make(config_src='return {\n  listen = "127.0.0.1:{port}",\n  workers = = 2,\n}\n')
        self.assertCheckFails(self.check(s), "config.lua:3")

    def test_check_reports_config_that_is_not_a_table(self):
        s = self.make(config_src='return "listen here"\n')
        self.assertCheckFails(self.check(s))

    def test_unknown_top_level_key_is_named(self):
        s = self.make(config={"listen_on": "127.0.0.1:1"})
        self.assertCheckFails(self.check(s), "listen_on")

    def test_unknown_limits_key_is_named_with_its_path(self):
        s = self.make(config={"limits": {"max_header_bytez": 10}})
        self.assertCheckFails(self.check(s), "limits.max_header_bytez")

    def test_unknown_log_key_is_named_with_its_path(self):
        s = self.make(config={"log": {"colour": True}})
        self.assertCheckFails(self.check(s), "log.colour")

    def test_wrong_types_are_named(self):
        cases = [
            ({"workers": "two"}, "workers"),
            ({"listen": 8080}, "listen"),
            ({"debug": "yes"}, "debug"),
            ({"shutdown_timeout": "soon"}, "shutdown_timeout"),
            ({"startup_timeout": "later"}, "startup_timeout"),
            ({"startup_timeout": 0}, "startup_timeout"),
            ({"scripts": Lua("{}")}, "scripts"),
            ({"limits": {"max_header_bytes": "big"}}, "limits.max_header_bytes"),
            ({"limits": {"header_timeout": True}}, "limits.header_timeout"),
            ({"limits": "none"}, "limits"),
            ({"log": {"access": 5}}, "log.access"),
            ({"log": {"level": Lua("{}")}}, "log.level"),
        ]
        for over, key in cases:
            with self.subTest(key=key):
                s = self.make(config=over)
                self.assertCheckFails(self.check(s), key)

    def test_bad_log_level_is_named(self):
        s = self.make(config={"log": {"level": "loud"}})
        self.assertCheckFails(self.check(s), "log.level")

    def test_bad_listen_address_is_rejected(self):
        for listen in ("127.0.0.1", "127.0.0.1:notaport", "127.0.0.1:70000"):
            with self.subTest(listen=listen):
                s = self.make(config={"listen": listen})
                self.assertCheckFails(self.check(s), "listen")

    # -- db: the second-generation engine's keys

    # A db table that needs no server: --check and start-up connect in the background.
    DB = {"host": "127.0.0.1", "port": 1, "user": "nobody", "connect_timeout": 0.5}

    def db_config(self, **over):
        return {"db": harness.merge(self.DB, over)}

    def test_check_accepts_the_engine_keys(self):
        cases = [
            {"threads": 2, "pool_size": 4, "max_lifetime": 3600, "idle_timeout": 60.5, "min_idle": 0,
             "init_sql": "SET time_zone = '+00:00'"},
            {"threads": 4, "pool_size": 4, "min_idle": 4, "max_lifetime": 0, "idle_timeout": 0,
             "init_sql": ["SET time_zone = '+00:00'", "SET SESSION sql_mode = 'STRICT_ALL_TABLES'"]},
            {"threads": 1, "init_sql": Lua("{}")},
            {"threads": 64, "pool_size": 512, "min_idle": 512},
            {"threads": 0, "pool_size": 2},   # each worker drives its own share on its loop
            {"pipeline": 1}, {"pipeline": 64, "threads": 0, "pool_size": 2},
        ]
        for db in cases:
            with self.subTest(db=db):
                self.assertCheckOk(self.check(self.make(config=self.db_config(**db))))

    def test_bad_engine_values_are_named(self):
        cases = [
            ({"threads": -1}, "db.threads"),
            ({"threads": 65, "pool_size": 100}, "db.threads"),
            ({"threads": 1.5}, "db.threads"),
            ({"threads": "2"}, "db.threads"),
            ({"pipeline": 0}, "db.pipeline"),
            ({"pipeline": 65}, "db.pipeline"),
            ({"pipeline": 2.5}, "db.pipeline"),
            ({"max_lifetime": -1}, "db.max_lifetime"),
            ({"max_lifetime": "1h"}, "db.max_lifetime"),
            ({"idle_timeout": -0.5}, "db.idle_timeout"),
            ({"idle_timeout": True}, "db.idle_timeout"),
            ({"min_idle": -1}, "db.min_idle"),
            ({"min_idle": 513}, "db.min_idle"),
            ({"min_idle": 0.5}, "db.min_idle"),
            ({"init_sql": 5}, "db.init_sql"),
            ({"init_sql": ""}, "db.init_sql"),
            ({"init_sql": Lua('{ sql = "SET x = 1" }')}, "db.init_sql"),
            ({"init_sql": ["SET a = 1", ""]}, "db.init_sql[2]"),
            ({"init_sql": ["SET a = 1", "SET b = 2", 3]}, "db.init_sql[3]"),
            ({"init_sql": [Lua("{}")]}, "db.init_sql[1]"),
        ]
        for db, key in cases:
            with self.subTest(key=key, db=db):
                self.assertCheckFails(self.check(self.make(config=self.db_config(**db))), key)

    def test_threads_above_pool_size_is_rejected_naming_both(self):
        res = self.check(self.make(config=self.db_config(threads=5, pool_size=4)))
        self.assertCheckFails(res, "db.threads", "db.pool_size")

    def test_threads_above_the_default_pool_size_is_rejected(self):
        res = self.check(self.make(config=self.db_config(threads=5)))    # pool_size defaults to 4
        self.assertCheckFails(res, "db.threads", "db.pool_size")

    def test_no_database_threads_with_fewer_connections_than_workers_is_rejected(self):
        res = self.check(self.make(config=dict(self.db_config(threads=0, pool_size=3), workers=4)))
        self.assertCheckFails(res, "db.pool_size", "workers", "db.threads = 0")

    def test_min_idle_above_pool_size_is_rejected_naming_both(self):
        res = self.check(self.make(config=self.db_config(min_idle=3, pool_size=2)))
        self.assertCheckFails(res, "db.min_idle", "db.pool_size")

    def test_start_fails_on_a_bad_init_sql_element(self):
        self.assertStartFails(self.make(config=self.db_config(init_sql=["SET a = 1", False])),
                              "db.init_sql[2]")

    # -- a real start-up stops on the same errors

    def assertStartFails(self, server, *needles):
        server.start(wait=False)
        rc = server.wait(10)
        if rc is None:
            server.kill()
            self.fail("squall kept running with a bad setup\n%s" % server.describe())
        self.assertGreater(rc, 0, server.describe())
        log = server.log()
        for n in needles:
            self.assertIn(n, log)

    def test_start_fails_on_unknown_key(self):
        self.assertStartFails(self.make(config={"limits": {"max_header_bytez": 1}}),
                              "limits.max_header_bytez")

    def test_start_fails_on_syntax_error_in_app(self):
        self.assertStartFails(self.make(scripts={"app.lua": SYNTAX_ERROR_APP}),
                              "app.lua:%d" % SYNTAX_ERROR_LINE)

    def test_start_fails_when_port_is_taken(self):
        with socket.socket() as taken:
            taken.bind((harness.HOST, 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            s = self.make(config={"listen": "%s:%d" % (harness.HOST, port)})
            self.assertStartFails(s)


class StartupTest(unittest.TestCase):
    """Configs that must start and serve."""

    def serve(self, server, path="/hello/cfg", body=b"Hello, cfg"):
        try:
            server.start()
            r = server.request("GET", path)
            self.assertEqual((r.status, r.body), (200, body), r)
            server.stop()
        finally:
            server.kill()
            server.cleanup()

    def test_minimal_config_starts_with_defaults(self):
        self.serve(Server(config_src='return { listen = "127.0.0.1:{port}" }\n'))

    def test_single_worker(self):
        self.serve(Server(config={"workers": 1}))

    def test_many_workers(self):
        self.serve(Server(config={"workers": 4}))

    def test_started_from_another_directory(self):
        s = Server()
        elsewhere = tempfile.mkdtemp(prefix="squall-e2e-cwd-")
        try:
            s.start(cwd=elsewhere)
            r = s.request("GET", "/hello/cwd")
            self.assertEqual((r.status, r.body), (200, b"Hello, cwd"), r)
            s.stop()
        finally:
            s.kill()
            s.cleanup()
            shutil.rmtree(elsewhere, ignore_errors=True)

    def test_engine_keys_start_and_serve(self):
        self.serve(Server(config={"db": {
            "host": "127.0.0.1", "port": 1, "connect_timeout": 0.5, "pool_size": 4, "threads": 2,
            "max_lifetime": 600, "idle_timeout": 30, "min_idle": 2,
            "init_sql": ["SET time_zone = '+00:00'", "SET SESSION wait_timeout = 600"]}}))

    def test_ipv6_listen(self):
        try:
            port = harness.free_port("::1")
        except OSError:
            self.skipTest("no IPv6 loopback")
        s = Server(config={"listen": "[::1]:%d" % port})
        s.start(wait=False)
        try:
            deadline = time.monotonic() + harness.START_TIMEOUT
            while True:
                self.assertIsNone(s.proc.poll(), s.describe())
                try:
                    conn = socket.create_connection(("::1", port), timeout=0.5)
                    break
                except OSError:
                    self.assertLess(time.monotonic(), deadline, s.describe())
                    time.sleep(0.05)
            with conn:
                conn.sendall(b"GET /req HTTP/1.1\r\nHost: v6\r\nConnection: close\r\n\r\n")
                data = b""
                conn.settimeout(5)
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
            self.assertIn(b'"remote_addr":"::1"', data.replace(b" ", b""))
            s.stop()
        finally:
            s.kill()
            s.cleanup()


if __name__ == "__main__":
    harness.main()
