"""Handler errors (500, logged traceback, debug bodies), unsafe response headers, the access log,
log files and log levels."""

import re

import harness
from harness import app_line, build_request

ERROR_LINE = app_line("marker: handler error")
TABLE_ERROR_LINE = app_line("marker: table error")
MODULE_ERROR_LINE = app_line("marker: module error", "e2e_util.lua")


LEVEL_RE = re.compile(r"\[(debug|info|warn|warning|error)\]")


def error_event(log, request_line, where):
    """True when one [error] line (one event) mentions both request_line and `where`."""
    return any("[error]" in line and request_line in line and where in line
               for line in log.splitlines())


class ErrorAssertions:
    def assertInternalError(self, r):
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.text.strip(), "Internal Server Error")


class HandlerErrorTest(ErrorAssertions, harness.ServerTestCase):

    def test_lua_error_is_500_with_generic_body(self):
        r = self.request("GET", "/error")
        self.assertResponse(r, 500, None, "text/plain; charset=utf-8")
        self.assertEqual(r.text.strip(), "Internal Server Error")
        self.assertNotIn(b"boom", r.body)
        self.assertNotIn(b"app.lua", r.body)
        self.assertStandardHeaders(r)

    def test_lua_error_is_logged_with_request_line_and_traceback(self):
        r = self.request("GET", "/error?from=log-test")
        self.assertInternalError(r)
        where = "app.lua:%d" % ERROR_LINE
        self.assertLog(lambda log: error_event(log, "GET /error", where),
                       "no [error] line with 'GET /error' and %s" % where)
        self.assertIn("boom from handler", self.server.log())

    def test_error_in_required_module_is_500_and_logged(self):
        r = self.request("GET", "/error-module")
        self.assertInternalError(r)
        where = "e2e_util.lua:%d" % MODULE_ERROR_LINE
        self.assertLog(lambda log: error_event(log, "GET /error-module", where),
                       "no [error] line with 'GET /error-module' and %s" % where)

    def test_non_string_error_value_is_500(self):
        r = self.request("GET", "/error-table")
        self.assertInternalError(r)
        self.assertLog(lambda log: error_event(log, "GET /error-table", "[error]"),
                       "no [error] line for GET /error-table")

    def test_server_keeps_serving_after_errors(self):
        for i in range(12):    # more than there are workers
            r = self.request("GET", "/error")
            self.assertInternalError(r)
            self.assertResponse(self.request("GET", "/hello/ok%d" % i), 200, "Hello, ok%d" % i)

    def test_request_after_error_on_same_connection(self):
        with self.connect() as c:
            c.send(build_request("GET", "/error") + build_request("GET", "/hello/next"))
            r = c.read_response()
            self.assertInternalError(r)
            if (r.header("Connection") or "").lower() != "close":
                self.assertResponse(c.read_response(), 200, "Hello, next")
        self.assertServesFresh()

    # -- unsafe response headers

    def assertUnsafeHeaderRejected(self, path):
        with self.connect() as c:
            c.send(build_request("GET", path))
            r = c.read_response()
            self.assertInternalError(r)
            self.assertEqual(r.header_all("X-Injected"), [], r)
            self.assertNotIn(b"must not be sent", r.raw)
            self.assertNotIn(b"X-Injected", r.raw)
        self.assertLog(lambda log: error_event(log, "GET %s" % path, "[error]"),
                       "no [error] line for GET %s" % path)
        self.assertServesFresh()

    def test_header_value_with_crlf_is_500(self):
        self.assertUnsafeHeaderRejected("/bad-header-value")

    def test_header_value_with_bare_lf_is_500(self):
        self.assertUnsafeHeaderRejected("/bad-header-lf")

    def test_header_name_with_crlf_is_500(self):
        self.assertUnsafeHeaderRejected("/bad-header-name")

    def test_header_array_item_with_crlf_is_500(self):
        self.assertUnsafeHeaderRejected("/bad-header-array")

    # -- logs

    def test_error_with_traceback_is_one_log_line(self):
        r = self.request("GET", "/error-module")
        self.assertInternalError(r)
        log = self.assertLog(lambda log: error_event(log, "GET /error-module", "[error]"),
                             "no [error] line for GET /error-module")
        line = next(l for l in log.splitlines() if "GET /error-module" in l)
        # The traceback rides on the same line: the handler's frame in app.lua is there too.
        self.assertIn("e2e_util.lua:%d" % MODULE_ERROR_LINE, line)
        self.assertIn("app.lua:", line)
        stray = [l for l in log.splitlines() if l.strip() and not LEVEL_RE.search(l)]
        self.assertEqual(stray, [], "log lines without a [level]: one event spans several lines")

    def test_no_debug_lines_at_info_level(self):
        self.request("GET", "/hello/x")
        self.assertNotIn("[debug]", self.server.log())


class DebugModeTest(harness.ServerTestCase):
    config = {"debug": True}

    def test_debug_500_body_contains_traceback(self):
        r = self.request("GET", "/error")
        self.assertEqual(r.status, 500, r)
        self.assertIn(b"Internal Server Error", r.body)
        self.assertIn(b"app.lua:%d" % ERROR_LINE, r.body)
        self.assertIn(b"boom from handler", r.body)
        self.assertLog(lambda log: error_event(log, "GET /error", "app.lua:%d" % ERROR_LINE),
                       "no [error] line for GET /error")

    def test_debug_mode_still_serves_normally(self):
        self.assertResponse(self.request("GET", "/hello/dbg"), 200, "Hello, dbg")


class AccessLogTest(ErrorAssertions, harness.ServerTestCase):
    config = {"log": {"access": "access.log", "error": "error.log", "level": "info"}}

    def access_lines(self):
        return [l for l in self.server.read_file("access.log").splitlines() if l.strip()]

    def test_access_log_has_one_line_per_request(self):
        before = len(self.access_lines())
        reqs = [("GET", "/hello/logged", 200, "Hello, logged"), ("POST", "/echo-body", 200, "x"),
                ("GET", "/no/such/logged", 404, "Not Found"),
                ("DELETE", "/hello/logged", 405, "Method Not Allowed"),
                ("GET", "/error", 500, "Internal Server Error"), ("PUT", "/resource", 200, "put x")]
        for method, path, status, body in reqs:
            r = self.request(method, path, body="x" if method in ("POST", "PUT") else None)
            self.assertEqual((r.status, r.text.strip()), (status, body), r)
        want = before + len(reqs)
        self.server.wait_for_log(lambda t: len(self.access_lines()) >= want,
                                 source=lambda: "")
        lines = self.access_lines()[before:]
        self.assertEqual(len(lines), len(reqs), "\n".join(lines))
        for (method, path, status, _), line in zip(reqs, lines):
            with self.subTest(line=line):
                self.assertIn(method, line)
                self.assertIn(path, line)
                self.assertRegex(line, r"\b%d\b" % status)
                self.assertIn("127.0.0.1", line)

    def test_access_log_records_pipelined_requests(self):
        before = len(self.access_lines())
        with self.connect() as c:
            c.send(b"".join(build_request("GET", "/seq/pl%d" % i) for i in range(5)))
            for i in range(5):
                self.assertResponse(c.read_response(), 200, "seq pl%d" % i)
        self.server.wait_for_log(lambda t: len(self.access_lines()) >= before + 5,
                                 source=lambda: "")
        lines = self.access_lines()[before:]
        self.assertEqual(len(lines), 5, "\n".join(lines))
        for i, line in enumerate(lines):
            self.assertIn("/seq/pl%d" % i, line)

    def test_error_log_goes_to_configured_file(self):
        r = self.request("GET", "/error")
        self.assertInternalError(r)
        where = "app.lua:%d" % ERROR_LINE
        self.assertLog(lambda log: error_event(log, "GET /error", where),
                       "error.log has no [error] line for GET /error",
                       source=lambda: self.server.read_file("error.log"))
        self.assertNotIn("boom from handler", self.server.log())   # not on stderr


class ErrorLevelLogTest(ErrorAssertions, harness.ServerTestCase):
    config = {"log": {"level": "error"}}

    def test_error_level_logs_errors_but_not_info(self):
        self.assertResponse(self.request("GET", "/hello/quiet"), 200, "Hello, quiet")
        r = self.request("GET", "/error")
        self.assertInternalError(r)
        self.assertLog(lambda log: error_event(log, "GET /error", "app.lua:%d" % ERROR_LINE),
                       "no [error] line for GET /error at level error")
        log = self.server.log()
        self.assertNotIn("[info]", log)
        self.assertNotIn("[debug]", log)


if __name__ == "__main__":
    harness.main()
