"""A reload that cannot load the new code (syntax error, error at a module's top level, require of
a missing module, or any of these in a required module) keeps the current generation serving,
reports the error with file:line (`squall reload` on stderr with exit 1, squall.reload_status(),
the log at [error]), and the next reload of fixed code succeeds."""

import os
import re

import harness
import reloadharness
from reloadharness import ReloadServer, ReloadTestCase

GOOD = ('local squall = require "squall"\n'
        'local helper = require "lib.helper"\n'
        'local app = squall.app()\n'
        + reloadharness.STATUS_ROUTE +
        'app:get("/v", function(req) return "%s " .. helper.name end)\n'
        'return app\n')
HELPER = 'return { name = "%s" }\n'


def app_with(tag, bad_line):
    """GOOD with `bad_line` inserted as line 3 (after the requires)."""
    lines = (GOOD % tag).splitlines(True)
    return "".join(lines[:2] + [bad_line + "\n"] + lines[2:])


# kind: (file, its broken text, line of the error in it, a fragment of the message)
BROKEN = {
    "syntax": ("app.lua", app_with("broken", "local x = = 1  -- syntax error"), 3, "unexpected symbol"),
    "runtime": ("app.lua", app_with("broken", 'error("top level refuses to load")'), 3,
                "top level refuses to load"),
    "missing_module": ("app.lua", app_with("broken", 'local nope = require "no_such_module_xyz"'), 3,
                       "module 'no_such_module_xyz' not found"),
    "submodule_runtime": ("lib/helper.lua",
                          'local M = { name = "helper" }\nlocal t = nil\nM.size = t.size\nreturn M\n',
                          3, "attempt to index"),
    "submodule_syntax": ("lib/helper.lua", 'return {\n  name = "helper"\n  size = 1\n}\n', 3,
                         "'}' expected"),
}


class ReloadErrorsTest(ReloadTestCase):

    def start_server(self, reload):
        return self.adopt(ReloadServer({"app.lua": GOOD % "v1", "lib/helper.lua": HELPER % "helper"},
                                       reload=reload))


    def assertFailedStatus(self, st, attempts, where, fragment):
        self.assertEqual((st["ok"], st["generation"], st["attempts"]), (False, 0, attempts),
                         "%r\n%s" % (st, self.server.log()))
        self.assertRegex(st.get("error", ""), re.escape(where))
        self.assertIn(fragment, st["error"])

    def assertCliFails(self, where, fragment):
        r = self.server.cli_reload()
        self.assertEqual(r.returncode, 1, "squall reload: %r %r" % (r.stdout, r.stderr))
        self.assertIn(where, r.stderr)
        self.assertIn(fragment, r.stderr)
        return r

    def check(self, kind, reload):
        rel, text, line, fragment = BROKEN[kind]
        where = "%s:%d:" % (rel, line)
        server = self.start_server(reload)
        self.assertServes("v1 helper")

        server.write_script(rel, text)
        if reload:    # the watcher tries and fails by itself
            st = server.wait_attempts(1, timeout=2.0)
            self.assertFailedStatus(st, 1, where, fragment)
            cli = self.assertCliFails(where, fragment)     # and so does an explicit reload
            attempts = 2
        else:
            cli = self.assertCliFails(where, fragment)
            attempts = 1
        self.assertEqual(cli.stdout, "")
        self.assertServes("v1 helper")    # the old code keeps serving
        self.assertFailedStatus(self.server.status(), attempts, where, fragment)
        failed = server.failed_reloads()
        self.assertEqual(len(failed), attempts, server.log())
        for kept, err in failed:
            self.assertEqual(kept, "0")
            self.assertIn(where, err)

        # Fix it: the next reload (the watcher's, or `squall reload`) succeeds.
        server.write_script("app.lua", GOOD % "v2")
        server.write_script("lib/helper.lua", HELPER % "fixed helper")
        if reload:
            st = server.wait_attempts(attempts + 1, timeout=2.0)
        else:
            r = server.cli_reload()
            self.assertEqual(r.returncode, 0, "squall reload: %r %r" % (r.stdout, r.stderr))
            self.assertIn("generation 1 is serving", r.stdout)
            st = server.status()
        self.assertEqual(st, {"ok": True, "generation": 1, "attempts": attempts + 1},
                         "%r\n%s" % (st, server.log()))
        self.assertServes("v2 fixed helper")
        self.assertIn("reload: generation 1 is serving", server.log())
        if reload:    # and an explicit reload of the fixed code agrees
            r = server.cli_reload()
            self.assertEqual((r.returncode, r.stderr), (0, ""), r.stdout)
            self.assertIn("generation 2 is serving", r.stdout)

    # squall reload with `reload = false`

    def test_syntax_error_keeps_old_code_and_cli_reload_exits_1_with_file_and_line(self):
        self.check("syntax", reload=False)

    def test_top_level_runtime_error_keeps_old_code_and_cli_reload_exits_1_with_file_and_line(self):
        self.check("runtime", reload=False)

    def test_require_of_missing_module_keeps_old_code_and_cli_reload_exits_1_with_file_and_line(self):
        self.check("missing_module", reload=False)

    def test_runtime_error_in_required_module_names_that_module_and_line(self):
        self.check("submodule_runtime", reload=False)

    def test_syntax_error_in_required_module_names_that_module_and_line(self):
        self.check("submodule_syntax", reload=False)

    # the watcher with `reload = true`

    def test_watched_syntax_error_is_recorded_and_fixing_the_file_reloads(self):
        self.check("syntax", reload=True)

    def test_watched_top_level_runtime_error_is_recorded_and_fixing_the_file_reloads(self):
        self.check("runtime", reload=True)

    def test_watched_require_of_missing_module_is_recorded_and_fixing_the_file_reloads(self):
        self.check("missing_module", reload=True)

    def test_load_failing_in_one_worker_only_keeps_every_worker_on_old_code(self):
        server = self.start_server(reload=False)
        claim = server.script_path("claim")
        with open(claim, "w") as f:
            f.write("whoever renames this first may load")
        # The first worker to load takes the claim; the other one fails (line 3).
        one_only = app_with("v2", 'if not os.rename(%r, %r) then error("claim already taken") end'
                            % (claim, claim + ".taken"))
        server.write_script("app.lua", one_only)
        r = server.cli_reload()
        self.assertEqual(r.returncode, 1, "%r %r\n%s" % (r.stdout, r.stderr, server.log()))
        self.assertIn("app.lua:3:", r.stderr)
        self.assertIn("claim already taken", r.stderr)
        self.assertTrue(os.path.exists(claim + ".taken"), "no worker loaded the new code")
        # New connections spread over both workers: none may serve the half-loaded version.
        bodies = [server.request("GET", "/v").body for _ in range(20)]
        self.assertEqual(set(bodies), {b"v1 helper"}, server.log())
        st = server.status()
        self.assertEqual((st["ok"], st["generation"], st["attempts"]), (False, 0, 1), st)

    def test_app_module_not_returning_an_app_fails_the_reload(self):
        server = self.start_server(reload=False)
        server.write_script("app.lua", 'return 42\n')
        r = server.cli_reload()
        self.assertEqual(r.returncode, 1, "%r %r" % (r.stdout, r.stderr))
        self.assertIn("must return a squall app", r.stderr)
        self.assertServes("v1 helper")
        st = server.status()
        self.assertEqual((st["ok"], st["generation"], st["attempts"]), (False, 0, 1), st)
        self.assertIn("must return a squall app", st["error"])


if __name__ == "__main__":
    harness.main()
