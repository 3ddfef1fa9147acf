"""Streamed responses from Lua handlers: res:start, res:write, res:finish (chunked on HTTP/1.1,
delimited by the close on HTTP/1.0), backpressure on a slow reader, a handler that returns without
finishing, an error after the head, and a client that goes away."""

import socket
import struct
import time

import harness
from harness import build_request


class StreamTest(harness.ServerTestCase):

    def test_parts_arrive_chunked_on_http11_and_the_connection_stays(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/parts?n=3"))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Transfer-Encoding"), "chunked")
            self.assertIsNone(r.header("Content-Length"))
            self.assertEqual(r.header("X-Stream"), "yes")
            self.assertEqual(r.header("Server"), "squall")
            self.assertRegex(r.header("Date"), harness.IMF_FIXDATE_RE)
            self.assertEqual(r.body, b"part 1\npart 2\npart 3\n")
            # Keep-alive: the next request on the connection is served.
            c.send(build_request("GET", "/hello/again"))
            self.assertResponse(c.read_response(), 200, "Hello, again")

    def test_each_part_leaves_when_written(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/parts?n=2"))
            c.sock.settimeout(5)
            first = c.sock.recv(65536)
            # The head and the first part come before the handler has written the second one.
            self.assertIn(b"part 1\n", first)
            self.assertNotIn(b"part 2", first)

    def test_finish_sends_the_end_before_the_handler_returns(self):
        with self.connect() as c:
            start = time.monotonic()
            c.send(build_request("GET", "/stream/parts?n=1&after=2"))
            r = c.read_response()
            self.assertEqual(r.body, b"part 1\n")
            self.assertLess(time.monotonic() - start, 1.5)

    def test_http10_body_is_delimited_by_the_close(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/parts?n=2", version="1.0", host=False))
            raw = c.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"part 1\npart 2\n")

    def test_pipelined_requests_after_a_stream_are_answered_in_order(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/parts?n=2") + build_request("GET", "/hello/next") +
                   build_request("GET", "/stream/unfinished"))
            a, b, d = c.read_responses(["GET", "GET", "GET"])
            self.assertEqual(a.body, b"part 1\npart 2\n")
            self.assertResponse(b, 200, "Hello, next")
            self.assertEqual(d.status, 201)
            self.assertEqual(d.body, b"started and returned")

    def test_head_gets_the_head_without_a_body(self):
        with self.connect() as c:
            c.send(build_request("HEAD", "/stream/parts?n=2") + build_request("GET", "/hello/after"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200)
            self.assertResponse(c.read_response(), 200, "Hello, after")

    def test_a_handler_that_returns_without_finishing_is_finished_for_it(self):
        r = self.request("GET", "/stream/unfinished")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.body, b"started and returned")

    def test_an_error_after_start_closes_the_connection_and_is_logged(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/fails"))
            raw = c.read_until_close()
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
        self.assertIn(b"partial", raw)
        self.assertNotIn(b"0\r\n\r\n", raw)  # no last chunk: the body is visibly cut short
        self.assertNotIn(b"500", raw)
        self.server.wait_for_log(lambda log: "error after res:start(): " in log and "boom after the head" in log)
        self.assertStandardHeaders(self.request("GET", "/hello/fine"))

    def test_an_error_after_finish_leaves_the_response_whole_and_is_logged(self):
        with self.connect() as c:
            c.send(build_request("GET", "/stream/fails-after-finish") + build_request("GET", "/hello/next"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"whole"))
            self.assertResponse(c.read_response(), 200, "Hello, next")
        self.server.wait_for_log(lambda log: "after res:finish(): " in log and "boom after the end" in log)
        self.assertIn("boom after the end", self.server.log())

    def test_a_slow_reader_holds_the_handler_back_and_gets_every_byte(self):
        chunks = 512  # 32 MiB: more than the kernel buffers on both sides of a loopback socket
        with self.connect(timeout=30) as c:
            c.send(build_request("GET", "/stream/big?chunks=%d&tag=slow" % chunks))
            time.sleep(1.0)
            # Not read yet: the handler waits on backpressure instead of buffering 32 MiB.
            self.assertNotIn("stream big done: slow", self.server.log())
            r = c.read_response()
        self.assertEqual(len(r.body), chunks * 65536)
        self.assertEqual(r.body.count(b"x"), chunks * 65536)
        self.server.wait_for_log(lambda log: "stream big done: slow" in log)

    def test_write_raises_when_the_client_has_gone(self):
        c = self.connect()
        c.send(build_request("GET", "/stream/write-after-reset"))
        c.sock.settimeout(5)
        self.assertIn(b"first", c.sock.recv(65536))
        # A reset (SO_LINGER 0) while the handler runs without waiting: its next writes fail.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        self.server.wait_for_log(lambda log: "write after reset: false res:write: the client has gone" in log)
        self.assertStandardHeaders(self.request("GET", "/hello/fine"))

    def test_an_endless_stream_stops_when_the_client_leaves(self):
        for _ in range(3):
            with self.connect() as c:
                c.send(build_request("GET", "/stream/forever"))
                c.sock.settimeout(5)
                got = b""
                while got.count(b"data: tick") < 2:
                    got += c.sock.recv(65536)
                self.assertIn(b"Content-Type: text/event-stream", got)
        # The handlers were stopped (at their sleep): the server is healthy and, under ASan,
        # leaks nothing at exit (checked when the class stops the server).
        self.assertStandardHeaders(self.request("GET", "/hello/fine"))

    def test_only_the_requests_own_handler_may_use_res_and_only_in_order(self):
        r = self.request("GET", "/stream/misuse")
        self.assertEqual(r.status, 200)
        self.assertIn(b"res:write: call res:start first", r.body)
        self.assertIn(b"res:start can only be called from the request's own handler", r.body)


class StreamWithHooksTest(harness.ServerTestCase):
    """After hooks and error handlers see returned responses, not streamed ones (their head has
    gone by then)."""

    scripts = {"app.lua": """
local squall = require "squall"
local app = squall.app()
app:after(function(req, res) res.headers["X-After"] = "ran"; res.body = res.body .. "!" end)
app:on_error("*", function(req, err) return "handled " .. err.status end)
app:get("/returned", function(req) return "plain" end)
app:get("/streamed", function(req, res)
  res:start(200, { ["X-Own"] = "1" })
  res:write("as written")
end)
app:get("/streamed-then-abort", function(req, res)
  res:start(200)
  res:write("begun")
  squall.abort(409, "too late")
end)
return app
"""}

    def test_after_hooks_change_a_returned_response_but_not_a_streamed_one(self):
        r = self.request("GET", "/returned")
        self.assertEqual((r.body, r.header("X-After")), (b"plain!", "ran"))
        with self.connect() as c:
            c.send(build_request("GET", "/streamed"))
            r = c.read_response()
        self.assertEqual(r.body, b"as written")
        self.assertEqual(r.header("X-Own"), "1")
        self.assertIsNone(r.header("X-After"))

    def test_an_abort_after_start_closes_instead_of_reaching_the_error_handler(self):
        with self.connect() as c:
            c.send(build_request("GET", "/streamed-then-abort"))
            raw = c.read_until_close()
        self.assertIn(b"begun", raw)
        self.assertNotIn(b"handled", raw)
        self.server.wait_for_log(lambda log: "error after res:start(): HTTP 409: too late" in log)
        self.assertIn("error after res:start(): HTTP 409: too late", self.server.log())


if __name__ == "__main__":
    harness.main()
