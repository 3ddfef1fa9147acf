"""Edges of the handler API that broke framing or memory before: bodiless statuses, a host wait
inside a C boundary, a coroutine the host runs resumed by user code, and pipelined responses
while a later handler waits."""

import os
import time

import harness
from harness import build_request


class HandlerEdgesTest(harness.ServerTestCase):

    def test_204_and_304_carry_no_body_and_the_connection_stays_usable(self):
        with self.connect() as c:
            for code in (204, 304):
                c.send(build_request("GET", "/status-with-body/%d" % code))
                r = c.read_response()
                self.assertEqual(r.status, code)
                self.assertEqual(r.body, b"")
                self.assertIsNone(r.header("Content-Length") if code == 204 else None)
            # Had a body been sent, it would now be read as the start of this response.
            c.send(build_request("GET", "/hello/after"))
            self.assertResponse(c.read_response(), 200, "Hello, after")

    def test_a_handlers_date_and_server_replace_the_hosts_instead_of_repeating_them(self):
        r = self.request("GET", "/own-date-server")
        self.assertResponse(r, 200, "own")
        self.assertEqual(r.header_all("Date"), ["Tue, 01 Jan 2030 00:00:00 GMT"], r)
        self.assertEqual(r.header_all("Server"), ["origin/1.0"], r)
        self.assertEqual(r.header_all("Content-Length"), ["3"], r)
        # The next response on the same worker gets the host's again.
        self.assertStandardHeaders(self.request("GET", "/hello/after"))

    def test_an_informational_status_from_a_handler_is_a_500(self):
        self.assertEqual(self.request("GET", "/status-with-body/101").status, 500)
        self.assertIn("invalid status code", self.server.log())

    def test_waiting_inside_a_c_boundary_is_a_500_and_leaves_no_timer_behind(self):
        for _ in range(5):
            r = self.request("GET", "/sleep-in-sort")
            self.assertEqual(r.status, 500)
        self.assertIn("cannot wait here", self.server.log())
        time.sleep(0.1)   # the refused sleeps' timers would have fired by now
        self.assertResponse(self.request("GET", "/slow/1"), 200, "slow 1")
        self.assertServesFresh()

    def test_user_code_cannot_resume_a_coroutine_the_host_runs(self):
        r = self.request("GET", "/resume-host")
        self.assertEqual(r.status, 200)
        self.assertIn(b"cannot resume a coroutine that squall runs", r.body)

    def test_a_pipelined_response_is_not_held_back_by_a_later_waiting_handler(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/first") + build_request("GET", "/slow/1500"))
            t0 = time.monotonic()
            self.assertResponse(c.read_response(), 200, "Hello, first")
            self.assertLess(time.monotonic() - t0, 1.0, "the first response waited for the second")
            self.assertResponse(c.read_response(), 200, "slow 1500")


class StoppedTaskTest(harness.ServerTestCase):
    config = {"workers": 1}

    def wait_for_mark(self, mark, what):
        deadline = time.monotonic() + 5
        while not os.path.exists(mark):
            self.assertLess(time.monotonic(), deadline, "%s never ran" % what)
            time.sleep(0.01)

    def test_waiting_on_a_task_whose_request_went_away_raises_instead_of_hanging(self):
        started_mark = os.path.join(self.server.dir, "shared-task-started")
        joined_mark = os.path.join(self.server.dir, "shared-task-joined")
        with self.connect() as a:
            a.send(build_request("GET", "/shared-task/start?mark=" + started_mark))
            self.wait_for_mark(started_mark, "/shared-task/start")
            joiner = harness.ThreadResult(self.request, "GET", "/shared-task/join?mark=" + joined_mark)
            self.wait_for_mark(joined_mark, "/shared-task/join")   # now inside task:wait()
        started = time.monotonic()   # the client of /start is gone: its task is stopped
        r = joiner.get(10)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"failed: squall.spawn: the task was stopped before it finished", r.body)
        self.assertLess(time.monotonic() - started, 4, "the join waited for the task's sleep")
        self.assertServesFresh()



class SecondsOutOfRangeTest(harness.ServerTestCase):
    """Seconds that a cast to an integer gets wrong (undefined behaviour, which the UBSan build
    aborts on): clamped when huge, refused when NaN or negative."""
    config = {"workers": 1}    # the test client's request is served by the loop that waits on it

    def test_sleep_for_ever_is_clamped_and_the_server_carries_on(self):
        for case in ("huge", "big"):
            with self.subTest(case=case):
                self.assertResponse(self.request("GET", "/odd-sleep/" + case), 200, "sleeping")
        self.assertServesFresh()

    def test_sleep_with_nan_or_a_negative_raises_a_clear_error(self):
        for case in ("nan", "negative", "neg_huge"):
            with self.subTest(case=case):
                r = self.request("GET", "/odd-sleep/" + case)
                self.assertEqual(r.status, 200, r)
                self.assertIn("seconds must be a non-negative number", r.text)

    def test_test_client_with_a_huge_timeout_is_clamped(self):
        for case in ("huge", "big"):
            with self.subTest(case=case):
                self.assertResponse(self.request("GET", "/odd-client-timeout/" + case), 200,
                                    "200 Hello, inner")
        self.assertServesFresh()

    def test_test_client_with_a_nan_or_negative_timeout_raises_a_clear_error(self):
        for case in ("nan", "negative", "neg_huge"):
            with self.subTest(case=case):
                r = self.request("GET", "/odd-client-timeout/" + case)
                self.assertEqual(r.status, 200, r)
                self.assertIn("error: ", r.text)
                self.assertIn("timeout must be a non-negative number", r.text)


if __name__ == "__main__":
    harness.main()
