"""`squall test`: busted run inside the host against the real app and database, its options
passing through, its exit code and failure output, and the limits of rollback isolation."""

import os
import shutil
import subprocess
import tempfile
import unittest

import dbharness
import harness

HERE = os.path.dirname(os.path.abspath(__file__))
SPECS = os.path.join(HERE, "squalltest")


class SquallTestCommand(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = dbharness.shared_db()
        cls.dir = tempfile.mkdtemp(prefix="squall-test-")
        shutil.copytree(SPECS, os.path.join(cls.dir, "scripts"))
        with open(os.path.join(cls.dir, "config.lua"), "w") as f:
            f.write("return " + harness.lua_value({
                "listen": "127.0.0.1:1", "scripts": "scripts", "app": "app",
                "log": {"level": "warn"}, "db": cls.db.config()}) + "\n")
        cls.table = "t_ddl_%d" % os.getpid()
        cls.db.sql("CREATE TABLE IF NOT EXISTS %s (v INT); DELETE FROM %s" % (cls.table, cls.table))

    @classmethod
    def tearDownClass(cls):
        cls.db.sql("DROP TABLE IF EXISTS %s, %s_other" % (cls.table, cls.table))
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_specs(self, *args):
        env = dict(os.environ, SQUALL_DDL_TABLE=self.table)
        p = subprocess.run([harness.squall_bin(), "test", "-c", os.path.join(self.dir, "config.lua")]
                           + list(args), cwd=self.dir, env=env, capture_output=True, text=True, timeout=120)
        self.assertIsNone(harness.SANITIZER_RE.search(p.stderr), p.stderr)
        return p

    def spec(self, name):
        return os.path.join(self.dir, "scripts", name)

    def test_passing_specs_exit_zero(self):
        p = self.run_specs(self.spec("pass_spec.lua"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("2 successes / 0 failures / 0 errors", p.stdout)

    def test_the_client_reads_a_streamed_response(self):
        p = self.run_specs(self.spec("stream_spec.lua"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("1 success / 0 failures / 0 errors", p.stdout)

    def test_busted_options_pass_through(self):
        p = self.run_specs("-t", "fast", "-o", "TAP", self.spec("pass_spec.lua"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("1..1", p.stdout)                 # TAP output, one test selected by tag
        self.assertIn("ok 1 - passing gets ok #fast", p.stdout)
        p = self.run_specs("--filter", "filtered", self.spec("pass_spec.lua"))
        self.assertIn("1 success / 0 failures", p.stdout)

    def test_a_failing_assertion_shows_name_file_line_and_message_and_exits_one(self):
        p = self.run_specs(self.spec("fail_spec.lua"))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        line = self.marker_line("fail_spec.lua", "fail-line")
        self.assertIn("failing reports an assertion with its message", p.stdout)
        self.assertIn("fail_spec.lua:%d: Expected objects to be equal." % line, p.stdout)
        self.assertIn('(string) \'ok\'', p.stdout)

    def test_a_handler_error_during_a_test_logs_its_traceback(self):
        p = self.run_specs("--filter", "500", self.spec("fail_spec.lua"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        line = self.marker_line("app.lua", "boom-line")
        self.assertIn("GET /boom", p.stderr)
        self.assertIn("app.lua:%d:" % line, p.stderr)
        self.assertIn("stack traceback:", p.stderr)

    def test_ddl_commits_implicitly_and_escapes_the_rollback(self):
        p = self.run_specs(self.spec("ddl_spec.lua"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rows = self.db.sql("SELECT v FROM %s ORDER BY v" % self.table)
        # The row before CREATE TABLE was committed by it; the other test's row was rolled back.
        self.assertEqual([r[0] for r in rows], ["1"])

    def marker_line(self, name, marker):
        with open(self.spec(name)) as f:
            for i, text in enumerate(f, 1):
                if marker in text:
                    return i
        raise AssertionError("no %s in %s" % (marker, name))


if __name__ == "__main__":
    harness.main()
