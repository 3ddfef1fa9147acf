"""What a connection keeps between requests and for a slow reader (issue 12).

An idle keep-alive connection holds no read, write or request buffer: every read lands in the
worker's scratch buffer and only what is left over (requests pipelined behind a handler that
waits) is copied into the connection. These tests check that nothing is lost that way: a request
split over many reads, one left half-sent while the connection waits, pipelined ones behind a
handler that sleeps. Large bodies are written from the handler's own string instead of a copy,
spliced between the heads of a pipelined batch. A client that reads its response below
limits.send_min_rate is closed; one that reads slowly but usefully gets every byte.
"""

import socket
import time

import harness
from harness import build_request, read_head, read_response, small_window

MIB = 1 << 20
BIG = b"0123456789abcdef" * 65536  # the app's 1 MiB block (/big/:mib repeats it)


class IdleConnectionTest(harness.ServerTestCase):
    config = {"limits": {"keepalive_timeout": 30, "header_timeout": 30}}

    def test_an_idle_keep_alive_connection_serves_its_next_requests(self):
        with self.connect() as c:
            for i in range(4):
                c.send(build_request("GET", "/hello/idle%d" % i))
                self.assertResponse(c.read_response(), 200, "Hello, idle%d" % i)
                time.sleep(0.2)  # idle: its buffers are gone until the next request

    def test_a_request_split_in_many_small_reads_is_parsed(self):
        with self.connect() as c:
            for i in range(2):
                c.send_split(build_request("POST", "/seq/%d" % i, body="b" * 300), delay=0.003)
                self.assertResponse(c.read_response(), 200, "seq %d body %s" % (i, "b" * 300))

    def test_a_request_left_half_sent_while_the_connection_waits_is_completed_later(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/first") + b"GET /hello/sec")
            self.assertResponse(c.read_response(), 200, "Hello, first")
            time.sleep(0.5)
            c.send(b"ond HTTP/1.1\r\nHo")
            time.sleep(0.3)
            c.send(b"st: x\r\n\r\n")
            self.assertResponse(c.read_response(), 200, "Hello, second")

    def test_requests_pipelined_behind_a_waiting_handler_are_kept_and_answered_in_order(self):
        with self.connect() as c:
            c.send(build_request("GET", "/slow/200") + build_request("GET", "/hello/one"))
            time.sleep(0.05)
            c.send(build_request("GET", "/seq/two") + build_request("GET", "/slow/100")
                   + build_request("GET", "/hello/three"))
            self.assertResponse(c.read_response(), 200, "slow 200")
            self.assertResponse(c.read_response(), 200, "Hello, one")
            self.assertResponse(c.read_response(), 200, "seq two")
            self.assertResponse(c.read_response(), 200, "slow 100")
            self.assertResponse(c.read_response(), 200, "Hello, three")


class LargeBodyTest(harness.ServerTestCase):
    def test_a_large_body_read_normally_arrives_byte_for_byte(self):
        with self.connect(timeout=30) as c:
            c.send(build_request("GET", "/big/32"))
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), 32 * MIB)
        self.assertTrue(r.body == BIG * 32, "the body is not the one the handler returned")

    def test_large_bodies_pipelined_with_small_ones_keep_their_order_and_bytes(self):
        with self.connect(timeout=30) as c:
            c.send(build_request("GET", "/big/2") + build_request("GET", "/hello/between")
                   + build_request("GET", "/big/1") + build_request("HEAD", "/big/3")
                   + build_request("GET", "/hello/after"))
            first = c.read_response()
            between = c.read_response()
            second = c.read_response()
            head = c.read_response("HEAD")
            after = c.read_response()
        self.assertTrue(first.status == 200 and first.body == BIG * 2, "first big body differs")
        self.assertResponse(between, 200, "Hello, between")
        self.assertTrue(second.status == 200 and second.body == BIG, "second big body differs")
        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual(head.header("content-length"), str(3 * MIB))
        self.assertResponse(after, 200, "Hello, after")


class SlowReaderBelowMinRateTest(harness.ServerTestCase):
    # 1 MB/s over windows of 1 s: the reader below takes about 130 KB/s.
    config = {"limits": {"send_timeout": 1, "send_min_rate": 1000000, "keepalive_timeout": 30},
              "log": {"level": "debug"}}

    def test_a_reader_below_the_minimum_rate_is_closed(self):
        closed = lambda: "under limits.send_min_rate (1000000 bytes/s)" in self.server.log()
        with small_window(self.port) as s:
            s.sendall(build_request("GET", "/big/32"))
            length, rest = read_head(s)
            got = len(rest)
            started = time.monotonic()
            # Until the server says it closed us: the kernel still delivers, for a while, what it
            # had taken for the socket before the close.
            while not closed() and got < length and time.monotonic() - started < 15:
                chunk = s.recv(16384)
                self.assertTrue(chunk, "closed without the log line")
                got += len(chunk)
                time.sleep(0.12)
        self.assertTrue(closed(), "no log line for the slow reader after %.1fs" % (time.monotonic() - started))
        self.assertLess(got, length, "the whole response arrived: the slow reader was kept")
        self.assertResponse(self.request("GET", "/hello/after"), 200, "Hello, after")


class SlowButUsefulReaderTest(harness.ServerTestCase):
    # 64 KiB/s over windows of 1 s; the reader takes about 1.5 MB/s, pausing between reads.
    config = {"limits": {"send_timeout": 1, "send_min_rate": 65536, "keepalive_timeout": 30},
              "log": {"level": "debug"}}

    def test_a_slow_reader_above_the_minimum_rate_gets_the_whole_body(self):
        with small_window(self.port) as s:
            s.sendall(build_request("GET", "/big/8"))
            started = time.monotonic()
            length, body = read_head(s)
            body = bytearray(body)
            while len(body) < length:
                chunk = s.recv(min(32768, length - len(body)))
                self.assertTrue(chunk, "closed after %d of %d bytes" % (len(body), length))
                body += chunk
                time.sleep(0.02)
            self.assertGreater(time.monotonic() - started, 2.5, "read too fast to span the windows")
            self.assertTrue(body == BIG * 8, "the body is not the one sent")
            s.sendall(build_request("GET", "/hello/again"))
            self.assertEqual(read_response(s), b"Hello, again")
        self.assertNotIn("send_min_rate", self.server.log())


if __name__ == "__main__":
    harness.main()
