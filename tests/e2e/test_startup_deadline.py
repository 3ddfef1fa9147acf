"""The start-up deadline: a top level that never finishes loading ends start-up after
startup_timeout with exit 1 and a message saying why."""

import time
import unittest

import harness
from harness import Server

STARTUP_TIMEOUT = 2

NEVER_LOADS = '''
local squall = require "squall"
local app = require "app"
squall.sleep(3600)
return app
'''


class StartupDeadlineTest(unittest.TestCase):

    def setUp(self):
        self.server = Server(config={"app": "top", "startup_timeout": STARTUP_TIMEOUT}, scripts={"top.lua": NEVER_LOADS})

    def tearDown(self):
        self.server.kill()
        self.server.cleanup()

    def test_a_top_level_that_never_finishes_fails_start_up_after_the_deadline(self):
        start = time.monotonic()
        self.server.start(wait=False)
        rc = self.server.wait(STARTUP_TIMEOUT + 20)
        took = time.monotonic() - start
        self.assertIsNotNone(rc, "still starting after %ds\n%s" % (STARTUP_TIMEOUT + 20,
                                                                   self.server.describe()))
        self.assertEqual(rc, 1, self.server.describe())
        self.assertGreaterEqual(took, STARTUP_TIMEOUT - 0.2)
        log = self.server.log()
        self.assertIn("start-up timed out: the app did not finish loading within 2s", log)
        self.assertNotIn("serving on", log)
        self.assertIsNone(harness.SANITIZER_RE.search(log), log)


if __name__ == "__main__":
    harness.main()
