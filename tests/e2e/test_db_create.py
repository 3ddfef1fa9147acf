"""`tools/db.sh create NAME USER PASSWORD`: an app's own database and user on the private server,
which a real squall then serves from (no socket login of the OS user involved)."""

import os
import subprocess
import unittest

import dbharness
import harness

NAME = dbharness.unique_name("app")
USER = "u_%d" % os.getpid()
PASSWORD = "p'a\\ss \"word\" $HOME"     # quotes, a backslash, a space and a shell variable

APP = """local squall = require "squall"
local db = require "squall.db"
local app = squall.app()
app:get("/whoami", function(req)
  db.query("CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY)")   -- DDL: all rights
  local rows = db.query("SELECT DATABASE() AS d, CURRENT_USER() AS u")
  return { database = rows[1].d, user = rows[1].u }
end)
return app
"""


def create(*args):
    return subprocess.run(["bash", dbharness.DB_SH, "create"] + list(args), capture_output=True,
                          text=True, timeout=120)


class DbShCreateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.db = dbharness.shared_db()

    @classmethod
    def tearDownClass(cls):
        cls.db.sql("DROP DATABASE IF EXISTS `%s`; DROP USER IF EXISTS '%s'@'127.0.0.1', '%s'@'localhost'"
                   % (NAME, USER, USER), root=True, database=False)

    def test_created_database_and_user_serve_a_real_app(self):
        r = create(NAME, USER, PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('database = "%s"' % NAME, r.stdout)
        self.assertIn('user = "%s"' % USER, r.stdout)
        cfg = {"app": "app", "db": self.db.config(user=USER, password=PASSWORD, database=NAME)}
        server = harness.Server(config=cfg, scripts={"app.lua": APP})
        server.start()
        try:
            res = harness.request(server.port, "GET", "/whoami")
            self.assertEqual(res.status, 200, "%r\n%s" % (res, server.log()[-2000:]))
            self.assertEqual(res.json()["database"], NAME)
            self.assertTrue(res.json()["user"].startswith(USER + "@"), res.json())
        finally:
            server.stop()

    def test_running_it_again_sets_the_password_anew(self):
        self.assertEqual(create(NAME, USER, "first").returncode, 0)
        r = create(NAME, USER)                     # no password: a random one, printed
        self.assertEqual(r.returncode, 0, r.stderr)
        line = [l for l in r.stdout.splitlines() if "SQUALL_DB_PASSWORD=" in l][-1]
        new = line.split("SQUALL_DB_PASSWORD=", 1)[1]
        self.assertNotEqual(new, "first")
        self.assertGreaterEqual(len(new), 20)
        ok = subprocess.run(["mariadb", "--no-defaults", "-u" + USER, "-p" + new, "-h127.0.0.1",
                             "-P%d" % self.db.port, "--protocol=tcp", NAME, "-e", "SELECT 1"],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        old = subprocess.run(["mariadb", "--no-defaults", "-u" + USER, "-pfirst", "-h127.0.0.1",
                              "-P%d" % self.db.port, "--protocol=tcp", NAME, "-e", "SELECT 1"],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(old.returncode, 0, "the old password still works")

    def test_the_grant_covers_that_database_alone(self):
        # "_" is a wildcard in a GRANT's database name: unescaped, t_app_1 would also grant tZappZ1.
        lookalike = NAME.replace("_", "Z")
        self.db.sql("CREATE DATABASE IF NOT EXISTS `%s`" % lookalike, root=True, database=False)
        self.addCleanup(self.db.sql, "DROP DATABASE IF EXISTS `%s`" % lookalike, root=True, database=False)
        self.assertEqual(create(NAME, USER, "pw-grant").returncode, 0)
        other = subprocess.run(["mariadb", "--no-defaults", "-u" + USER, "-ppw-grant", "-h127.0.0.1",
                                "-P%d" % self.db.port, "--protocol=tcp", lookalike, "-e", "SELECT 1"],
                               capture_output=True, text=True, timeout=30)
        self.assertNotEqual(other.returncode, 0, "the user reached %s too" % lookalike)
        own = subprocess.run(["mariadb", "--no-defaults", "-u" + USER, "-ppw-grant", "-h127.0.0.1",
                              "-P%d" % self.db.port, "--protocol=tcp", NAME, "-e", "SELECT 1"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(own.returncode, 0, own.stderr)

    def test_names_that_would_break_the_sql_are_refused(self):
        for args in (["bad-name"], ["ok_name", "bad user"], ["x`; DROP DATABASE squall; --"], []):
            r = create(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))


if __name__ == "__main__":
    harness.main()
