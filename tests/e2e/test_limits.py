"""Limits and timeouts: max_header_bytes, max_body_bytes, max_connections, header/body/keep-alive
timeouts (slowloris), and the send timeout (clients that stop reading)."""

import re
import socket
import time

import harness
from harness import build_request, chunked, read_head, read_response, small_window

TOO_LARGE = ("Payload Too Large", "Content Too Large", "Request Entity Too Large")


class SizeLimitsTest(harness.ServerTestCase):
    config = {"limits": {"max_header_bytes": 1024, "max_body_bytes": 1024}}

    def assertRejected(self, client, status, bodies):
        r = client.read_response()
        self.assertEqual(r.status, status, r)
        self.assertIn(r.text.strip(), bodies)
        self.assertEqual((r.header("Connection") or "").lower(), "close", r)
        self.assertStandardHeaders(r)
        self.assertClosedByServer(client)

    # -- headers

    def test_headers_within_limit_are_accepted(self):
        data = build_request("GET", "/hello/small", [("X-Pad", "p" * 600)])
        self.assertResponse(self.raw(data), 200, "Hello, small")

    def test_oversized_header_is_431_and_close(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/big", [("X-Pad", "p" * 4000)]))
            self.assertRejected(c, 431, ("Request Header Fields Too Large",))
        self.assertServesFresh()

    def test_many_headers_over_limit_are_431_and_close(self):
        headers = [("X-H%d" % i, "v" * 40) for i in range(60)]   # ~3 KB in total
        with self.connect() as c:
            c.send(build_request("GET", "/hello/many", headers))
            self.assertRejected(c, 431, ("Request Header Fields Too Large",))
        self.assertServesFresh()

    def test_oversized_headers_trickled_in_are_431(self):
        with self.connect() as c:
            c.send(b"GET /hello/x HTTP/1.1\r\nHost: t\r\n")
            try:
                for i in range(40):
                    c.send(("X-Trickle-%d: %s\r\n" % (i, "t" * 60)).encode())
                    time.sleep(0.002)
            except (BrokenPipeError, ConnectionResetError):
                pass    # the server may close as soon as it saw enough
            self.assertRejected(c, 431, ("Request Header Fields Too Large",))
        self.assertServesFresh()

    def test_oversized_header_after_good_pipelined_request(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/first") +
                   build_request("GET", "/hello/second", [("X-Pad", "p" * 4000)]))
            self.assertResponse(c.read_response(), 200, "Hello, first")
            self.assertRejected(c, 431, ("Request Header Fields Too Large",))

    def test_header_limit_is_per_request_not_per_connection(self):
        reqs = [build_request("GET", "/seq/%d" % i, [("X-Pad", "p" * 700)]) for i in range(8)]
        with self.connect() as c:
            c.send(b"".join(reqs))    # ~6 KB of headers in one write, each request < 1 KB
            for i in range(8):
                self.assertResponse(c.read_response(), 200, "seq %d" % i)
            for i in range(8):        # and one after another on the same connection
                c.send(reqs[i])
                self.assertResponse(c.read_response(), 200, "seq %d" % i)

    # -- bodies

    def test_body_at_limit_is_accepted(self):
        body = b"b" * 1024
        r = self.request("POST", "/echo-body", body=body)
        self.assertResponse(r, 200, body)

    def test_body_limit_is_per_request_not_per_connection(self):
        with self.connect() as c:
            c.send(b"".join(build_request("POST", "/seq/%d" % i, body="b" * 900)
                            for i in range(4)) +
                   build_request("POST", "/seq/4", [("Transfer-Encoding", "chunked")],
                                 chunked("c" * 500, "c" * 500)))
            for i in range(4):
                self.assertResponse(c.read_response(), 200, "seq %d body %s" % (i, "b" * 900))
            self.assertResponse(c.read_response(), 200, "seq 4 body " + "c" * 1000)

    def test_content_length_over_limit_is_413_and_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", "1025")]))
            self.assertRejected(c, 413, TOO_LARGE)
        self.assertServesFresh()

    def test_huge_content_length_is_413_and_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", "99999999999")]))
            self.assertRejected(c, 413, TOO_LARGE)
        self.assertServesFresh()

    def test_chunked_body_over_limit_is_413_and_close(self):
        body = chunked(*[b"c" * 300] * 4)    # 1200 bytes
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body))
            self.assertRejected(c, 413, TOO_LARGE)
        self.assertServesFresh()

    def test_chunked_body_over_limit_in_pieces_is_413(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")]))
            try:
                for _ in range(8):
                    c.send(b"100\r\n" + b"x" * 256 + b"\r\n")
                    time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.assertRejected(c, 413, TOO_LARGE)
        self.assertServesFresh()

    def test_head_over_the_body_limit_gets_413_with_no_body(self):
        # A body after the head would be read as the start of a next response.
        with self.connect() as c:
            c.send(build_request("HEAD", "/hello/x", [("Content-Length", "1025")]))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 413, r)
            self.assertStandardHeaders(r, head=True)
            self.assertIsNotNone(c.wait_closed(3), "connection not closed after the 413")
            self.assertEqual(c.buf, b"", "a HEAD's 413 carried a body")

    def test_an_error_after_a_head_request_still_has_its_body(self):
        # The parser keeps the last method until a new request line names one: a request that
        # fails before that is not a HEAD.
        with self.connect() as c:
            c.send(build_request("HEAD", "/hello/x"))
            self.assertEqual(c.read_response("HEAD").status, 200)
            c.send(b"\x01GET / HTTP/1.1\r\n\r\n")
            self.assertRejected(c, 400, ("Bad Request",))

    def test_chunked_body_at_limit_is_accepted(self):
        body = chunked(*[b"k" * 256] * 4)
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body)
        self.assertResponse(self.raw(data), 200, b"k" * 1024)


T = 0.5    # every timeout in TimeoutsTest; a fraction on purpose


class TimeoutsTest(harness.ServerTestCase):
    config = {"limits": {"header_timeout": T, "body_timeout": T, "keepalive_timeout": T}}

    # Upper bounds are loose: ctest runs files in parallel, and sanitizer builds are slower.
    def assertTimedOut(self, client, expect_408=True, high=5.0):
        """The server closes within `high` s; with a 408 response first if expect_408 (a bare
        close is also accepted otherwise). Returns the seconds waited."""
        waited = client.wait_closed(high + 1)
        self.assertIsNotNone(waited, "connection still open after %.1fs" % (high + 1))
        self.assertLessEqual(waited, high, "closed only after %.2fs" % waited)
        if expect_408 or client.buf:
            r = client.read_response()
            self.assertEqual(r.status, 408, r)
            self.assertEqual(r.text.strip(), "Request Timeout")
            self.assertEqual(client.buf, b"")
        return waited

    def test_partial_request_line_gets_408_and_close(self):
        with self.connect() as c:
            c.send(b"GET /hello/sl")
            self.assertGreaterEqual(self.assertTimedOut(c), T * 0.8)
        self.assertServesFresh()

    def test_partial_headers_get_408_and_close(self):
        with self.connect() as c:
            c.send(b"GET /hello/slow HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            self.assertTimedOut(c)
        self.assertServesFresh()

    def test_slowloris_trickling_headers_gets_408(self):
        with self.connect() as c:
            start = time.monotonic()
            c.send(b"GET /hello/loris HTTP/1.1\r\nHost: t\r\n")
            # One header byte every 0.2 s: activity must not push the header deadline back.
            answered = False
            while time.monotonic() - start < 8:    # a per-byte deadline would never fire
                try:
                    c.send(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    answered = True
                    break
                c.sock.settimeout(0.2)
                try:
                    answered = c.sock.recv(1, socket.MSG_PEEK) is not None
                    break    # data or EOF: the server acted
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    answered = True
                    break
                finally:
                    c.sock.settimeout(c.timeout)
            elapsed = time.monotonic() - start
            self.assertTrue(answered, "slowloris connection kept open for %.1fs" % elapsed)
            self.assertLess(elapsed, 6)
            self.assertGreaterEqual(elapsed, T * 0.8)
            self.assertClosedByServer(c)
            r = c.read_response()
            self.assertEqual(r.status, 408, r)
            self.assertEqual(r.text.strip(), "Request Timeout")
        self.assertServesFresh()

    def test_many_slowloris_connections_do_not_block_others(self):
        conns = [self.connect() for _ in range(30)]
        try:
            for i, c in enumerate(conns):
                c.send(b"GET /hello/loris%d HTTP/1.1\r\nHost: t\r\n" % i)
            start = time.monotonic()
            self.assertServesFresh()    # served while the stalled ones wait
            self.assertLess(time.monotonic() - start, T * 0.9)
            for c in conns:
                self.assertTimedOut(c)
        finally:
            for c in conns:
                c.close()
        self.assertServesFresh()

    def test_silent_connection_is_closed(self):
        with self.connect() as c:
            self.assertTimedOut(c, expect_408=False)
        self.assertServesFresh()

    def test_stalled_body_gets_408_and_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", "10")]) + b"abc")
            self.assertTimedOut(c)
        self.assertServesFresh()

    def test_stalled_head_request_body_gets_408_with_no_body(self):
        with self.connect() as c:
            c.send(build_request("HEAD", "/hello/x", [("Content-Length", "10")]) + b"abc")
            waited = c.wait_closed(6)
            self.assertIsNotNone(waited, "connection still open")
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 408, r)
            self.assertEqual(c.buf, b"", "a HEAD's 408 carried a body")
        self.assertServesFresh()

    def test_stalled_chunked_body_gets_408_and_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")]) +
                   b"5\r\nhel")
            self.assertTimedOut(c)
        self.assertServesFresh()

    def test_idle_keepalive_connection_is_closed(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/idle"))
            self.assertResponse(c.read_response(), 200, "Hello, idle")
            self.assertTimedOut(c, expect_408=False)

    def test_partial_second_request_on_keepalive_connection_times_out(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/first"))
            self.assertResponse(c.read_response(), 200, "Hello, first")
            c.send(b"GET /hello/second HTTP/1.1\r\nHo")
            self.assertTimedOut(c)

    def test_slow_handler_is_not_cut_by_request_timeouts(self):
        with self.connect(timeout=10) as c:
            c.send(build_request("GET", "/spin?ms=1000"))
            self.assertResponse(c.read_response(), 200, "spun 1000")


class TimeoutMarginsTest(harness.ServerTestCase):
    """Timeouts do not fire early: larger values, so that a loaded machine cannot flake."""
    config = {"limits": {"header_timeout": 1.5, "body_timeout": 1.5, "keepalive_timeout": 1.5}}

    def test_body_arriving_in_time_is_accepted(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", "10")]))
            time.sleep(0.5)
            c.send(b"01234")
            time.sleep(0.5)
            c.send(b"56789")
            self.assertResponse(c.read_response(), 200, "0123456789")

    def test_headers_arriving_in_time_are_accepted(self):
        with self.connect() as c:
            c.send(b"GET /hello/pa")
            time.sleep(0.5)
            c.send(b"tient HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.5)
            c.send(b"\r\n")
            self.assertResponse(c.read_response(), 200, "Hello, patient")

    def test_keepalive_timer_restarts_after_each_request(self):
        with self.connect() as c:
            for i in range(3):    # 3 x 0.6 s > keepalive_timeout, each gap below it
                c.send(build_request("GET", "/seq/%d" % i))
                self.assertResponse(c.read_response(), 200, "seq %d" % i)
                time.sleep(0.6)
            c.send(build_request("GET", "/seq/last"))
            self.assertResponse(c.read_response(), 200, "seq last")


MIB = 1 << 20


class SendTimeoutTest(harness.ServerTestCase):
    # A long keep-alive timeout, so that only send_timeout can end the stalled connection.
    config = {"limits": {"send_timeout": 1, "keepalive_timeout": 30}}

    def test_client_that_stops_reading_is_closed_after_send_timeout(self):
        with small_window(self.port) as s:
            s.sendall(build_request("GET", "/big/32"))
            time.sleep(3)  # reads nothing for 3 send_timeouts
            length, rest = read_head(s)
            got = len(rest)
            self.assertEqual(length, 32 * MIB)
            try:
                while got < length:
                    chunk = s.recv(1 << 18)
                    if not chunk:
                        break
                    got += len(chunk)
            except ConnectionResetError:
                pass
        self.assertLess(got, length, "the whole response arrived: the stalled connection was kept")
        self.assertResponse(self.request("GET", "/hello/after"), 200, "Hello, after")


class SlowReaderTest(harness.ServerTestCase):
    # Both 1 s: a response that takes longer than that to read must trip neither of them as long
    # as the client keeps reading.
    config = {"limits": {"send_timeout": 1, "keepalive_timeout": 1}}

    def test_slow_reader_gets_the_whole_response_and_keeps_its_connection(self):
        with small_window(self.port) as s:
            s.sendall(build_request("GET", "/big/16"))
            started = time.monotonic()
            length, body = read_head(s)
            body = bytearray(body)
            next_pause = 4 * MIB
            while len(body) < length:
                chunk = s.recv(min(1 << 16, length - len(body)))
                self.assertTrue(chunk, "closed after %d of %d bytes" % (len(body), length))
                body += chunk
                if len(body) >= next_pause:  # 0.45 s without reading: under both timeouts
                    time.sleep(0.45)
                    next_pause += 4 * MIB
            self.assertGreater(time.monotonic() - started, 1.2, "read too fast to test the timeouts")
            self.assertTrue(body == b"0123456789abcdef" * (length // 16), "the body is not the one sent")
            s.sendall(build_request("GET", "/hello/again"))
            self.assertEqual(read_response(s), b"Hello, again")


class MaxConnectionsTest(harness.ServerTestCase):
    config = {"limits": {"max_connections": 4, "keepalive_timeout": 30}}

    def open_working(self, n):
        conns = []
        for i in range(n):
            c = self.connect()
            c.send(build_request("GET", "/hello/c%d" % i))
            self.assertResponse(c.read_response(), 200, "Hello, c%d" % i)
            conns.append(c)
        return conns

    def open_when_free(self, tag, within=3.0):
        """A served connection, retrying while the server has yet to notice closed ones."""
        deadline = time.monotonic() + within
        while True:
            c = None
            try:
                c = self.connect()
                c.send(build_request("GET", "/hello/" + tag))
                r = c.read_response()
                if r.status == 503:    # still over the limit, said politely
                    raise harness.Closed("503")
                self.assertResponse(r, 200, "Hello, " + tag)
                return c
            except (harness.Closed, ConnectionError):
                if c is not None:
                    c.close()
                if time.monotonic() > deadline:
                    raise AssertionError("no slot freed within %ss" % within)
                time.sleep(0.1)

    def assertRefused(self):
        """A new connection is closed at once without being served (a 503 first is fine)."""
        try:
            c = self.connect()
        except ConnectionError:
            return
        with c:
            try:
                c.send(build_request("GET", "/hello/extra"))
            except (BrokenPipeError, ConnectionResetError):
                return
            waited = c.wait_closed(2.0)
            self.assertIsNotNone(waited, "connection over the limit was not closed")
            if c.buf:
                self.assertTrue(c.buf.startswith(b"HTTP/1.1 503 "),
                                "connection over the limit was served: %r" % c.buf[:200])

    def test_connections_over_limit_are_closed_and_slots_are_reused(self):
        conns = self.open_working(4)
        try:
            time.sleep(0.1)
            for _ in range(6):
                self.assertRefused()
            # Connections within the limit still work.
            for i, c in enumerate(conns):
                c.send(build_request("GET", "/seq/%d" % i))
                self.assertResponse(c.read_response(), 200, "seq %d" % i)
            # Closing two frees exactly two slots (refused ones did not leak a slot).
            for c in conns[:2]:
                c.close()
            conns = conns[2:] + [self.open_when_free("n%d" % i) for i in range(2)]
            self.assertRefused()
            for i, c in enumerate(conns):
                c.send(build_request("GET", "/seq/again%d" % i))
                self.assertResponse(c.read_response(), 200, "seq again%d" % i)
        finally:
            for c in conns:
                c.close()
        time.sleep(0.3)
        self.assertServesFresh()


class MaxConnectionsLogTest(harness.ServerTestCase):
    config = {"limits": {"max_connections": 2, "keepalive_timeout": 30}, "workers": 2}

    REFUSED_RE = re.compile(r"\[warn\] refused (\d+) connections?: limits.max_connections \(2\) reached")

    def refused_counts(self, since=0):
        return [int(n) for n in self.REFUSED_RE.findall(self.server.log()[since:])]

    def test_refused_connections_are_logged_at_most_once_a_second_with_a_count(self):
        held = []
        try:
            for i in range(2):
                c = self.connect()
                c.send(build_request("GET", "/hello/c%d" % i))
                self.assertResponse(c.read_response(), 200, "Hello, c%d" % i)
                held.append(c)
            # Only what the burst causes: the harness's own readiness probes may have been refused
            # (and logged) while the server was starting.
            since = len(self.server.log())
            start = time.monotonic()
            refused = 0
            while refused < 40 and time.monotonic() - start < 0.5:   # a burst inside a second
                with self.connect() as c:
                    self.assertIsNotNone(c.wait_closed(2.0), "connection over the limit was kept")
                refused += 1
            burst = time.monotonic() - start
            # The first refusal is reported at once, the rest of the burst a second later.
            self.assertLog(lambda text: sum(int(n) for n in self.REFUSED_RE.findall(text[since:])) == refused,
                           "the log does not account for the %d refused connections" % refused)
            counts = self.refused_counts(since)
            self.assertEqual(counts[0], 1, counts)
            self.assertLessEqual(len(counts), 2 + int(burst), counts)
            self.assertGreater(refused, len(counts), "the burst was too small to show rate limiting")
        finally:
            for c in held:
                c.close()


if __name__ == "__main__":
    harness.main()
