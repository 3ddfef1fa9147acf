"""A database outage does not flood the error log: a request failed by an unavailable database is
logged as one line without a traceback, and repeats of the same error within a second are only
counted, then summed up in one line. Other 500s keep their traceback. Against a throwaway MariaDB
that is stopped."""

import re
import time

import dbharness
import harness

REQUESTS_PER_CLIENT = 100
CLIENTS = 3
SUMMARY = re.compile(r"db: (\d+) more requests? failed with the same error in the last "
                     r"(\d+\.\d)s: (.*)$", re.M)


def setUpModule():
    dbharness.ThrowawayDbTestCase.throwaway = dbharness.ThrowawayDB()


def tearDownModule():
    dbharness.ThrowawayDbTestCase.throwaway.destroy()


class LogFloodTest(dbharness.ThrowawayDbTestCase):
    db_running = False
    db = {"pool_size": 2, "connect_timeout": 1}
    config = {"workers": 1}     # the counting is per worker: one makes the sums exact

    def burst(self, path, n):
        """n pipelined GETs on one connection; returns their statuses."""
        with harness.RawClient(self.server.port) as c:
            c.send(b"".join(harness.build_request("GET", path) for _ in range(n)))
            return [r.status for r in c.read_responses(["GET"] * n)]

    def log_lines(self, needle):
        return [line for line in self.server.log().splitlines() if needle in line]

    def test_an_outage_logs_a_handful_of_lines_and_counts_the_rest(self):
        path = "/c/quick?v=1"
        statuses = []
        for _ in range(CLIENTS):
            statuses += self.burst(path, REQUESTS_PER_CLIENT)
        self.assertEqual(statuses, [503] * (CLIENTS * REQUESTS_PER_CLIENT))
        time.sleep(1.2)     # past the window: the next failure brings out the count
        self.assertUnavailable(self.get(path))
        total = CLIENTS * REQUESTS_PER_CLIENT + 1

        def settled(log):
            return SUMMARY.search(log) is not None
        self.assertLog(settled, "no summary line after the window passed")
        logged = self.log_lines("GET " + path)
        summaries = [SUMMARY.search(line) for line in self.log_lines("more request")]
        self.assertTrue(logged, "the first failure is not logged")
        self.assertLessEqual(len(logged) + len(summaries), 8,
                             "too many lines for %d requests:\n%s"
                             % (total, "\n".join(logged + [m.group(0) for m in summaries])))
        for line in logged:
            self.assertNotIn("traceback", line, "an outage is no bug in the app")
            self.assertIn("database", line.lower(), "the line should say what failed: %s" % line)
        counted = sum(int(m.group(1)) for m in summaries)
        self.assertEqual(len(logged) + counted, total,
                         "every failed request is either logged or counted:\n%s"
                         % "\n".join(logged + [m.group(0) for m in summaries]))
        for m in summaries:
            self.assertLessEqual(float(m.group(2)), 1.0, m.group(0))
            self.assertIn(m.group(3), logged[0], "the summary names the error it counts")

    def test_other_500s_keep_their_traceback(self):
        self.assertServerError(self.get("/m/function-param"))
        self.assertLog(lambda log: any("stack traceback" in line
                                       for line in log.splitlines()
                                       if "GET /m/function-param" in line),
                       "a 500 from a bug in the app lost its traceback")


if __name__ == "__main__":
    harness.main()
