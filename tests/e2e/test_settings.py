"""config.lua's `settings` table reaches the app as squall.settings, the same in every worker;
`settings_env` fills keys from the environment; what cannot cross into a worker's Lua state (a
function, a cycle) and a missing variable stop start-up naming the key."""

import json
import os
import unittest

import harness
from harness import Lua, Server, run_check

APP = """local squall = require "squall"
local app = squall.app()
app:get("/settings", function(req)
  return { settings = squall.settings, worker = require("squall.core").worker_id }
end)
return app
"""

SETTINGS = Lua(r"""{
  name = "conduit",
  per_page = 20,
  ratio = 0.25,
  debug_sql = false,
  tricky = "quote \" backslash \\ newline \n tab \t nul \0 end",
  nested = { list = { 1, 2, "three" }, deep = { deeper = { flag = true } } },
  [7] = "seven",
}""")

EXPECTED = {
    "name": "conduit",
    "per_page": 20,
    "ratio": 0.25,
    "debug_sql": False,
    "tricky": "quote \" backslash \\ newline \n tab \t nul \0 end",
    "nested": {"list": [1, 2, "three"], "deep": {"deeper": {"flag": True}}},
    "7": "seven",
}


class SettingsReachTheAppTest(harness.ServerTestCase):
    config = {"workers": 2, "settings": SETTINGS}
    scripts = {"app.lua": APP}

    def test_every_worker_sees_the_same_settings(self):
        workers = set()
        for _ in range(40):     # a fresh connection each time: both workers answer some
            r = self.request("GET", "/settings")
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            self.assertEqual(doc["settings"], EXPECTED)
            workers.add(doc["worker"])
        self.assertEqual(len(workers), 2, "only worker(s) %s answered" % workers)


class SettingsEnvTest(unittest.TestCase):

    def setUp(self):
        self.servers = []
        os.environ["SQUALL_TEST_SECRET"] = "s3cr3t \"quoted\""
        self.addCleanup(os.environ.pop, "SQUALL_TEST_SECRET", None)

    def tearDown(self):
        for s in self.servers:
            s.kill()
            s.cleanup()

    def make(self, config):
        s = Server(config=config, scripts={"app.lua": APP})
        self.servers.append(s)
        return s

    def assertCheckFails(self, s, *needles):
        res = run_check(s.config_path, cwd=s.dir)
        self.assertNotEqual(res.returncode, 0, res.stdout + res.stderr)
        for n in needles:
            self.assertIn(n, res.stderr)

    def test_settings_env_fills_and_overrides_keys_from_the_environment(self):
        s = self.make({"settings": {"jwt_secret": "from the file", "other": 1},
                       "settings_env": {"jwt_secret": "SQUALL_TEST_SECRET"}})
        s.start()
        doc = harness.request(s.port, "GET", "/settings").json()
        self.assertEqual(doc["settings"], {"jwt_secret": "s3cr3t \"quoted\"", "other": 1})

    def test_settings_env_alone_makes_the_settings_table(self):
        s = self.make({"settings_env": {"secret": "SQUALL_TEST_SECRET"}})
        s.start()
        doc = harness.request(s.port, "GET", "/settings").json()
        self.assertEqual(doc["settings"], {"secret": "s3cr3t \"quoted\""})

    def test_no_settings_is_an_empty_table(self):
        s = self.make({})
        s.start()
        r = harness.request(s.port, "GET", "/settings")
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.json()["settings"], ({}, []))   # an empty Lua table encodes either way

    def test_a_missing_environment_variable_is_named_at_start_up(self):
        s = self.make({"settings_env": {"jwt_secret": "SQUALL_TEST_NOT_SET_ANYWHERE"}})
        self.assertCheckFails(s, "settings_env.jwt_secret", "SQUALL_TEST_NOT_SET_ANYWHERE")

    def test_a_function_in_settings_is_named(self):
        s = self.make({"settings": {"hooks": {"on_login": Lua("function() end")}}})
        self.assertCheckFails(s, "settings.hooks.on_login", "function")

    def test_a_table_that_contains_itself_is_rejected(self):
        s = Server(config_src="local t = {}; t.self = t\nreturn { listen = '127.0.0.1:{port}', "
                              "settings = { loop = t } }\n", scripts={"app.lua": APP})
        self.servers.append(s)
        self.assertCheckFails(s, "settings.loop.self", "nested more than")

    def test_settings_that_are_not_a_table_are_named(self):
        s = self.make({"settings": "debug"})
        self.assertCheckFails(s, "settings must be a table")

    def test_settings_env_values_must_be_variable_names(self):
        s = self.make({"settings_env": {"port": 5}})
        self.assertCheckFails(s, "settings_env must map")


if __name__ == "__main__":
    harness.main()
