"""HTTP/1.x protocol: standard headers, keep-alive, Connection, HTTP/1.0, pipelining, chunked
request bodies, HEAD and Expect: 100-continue."""

import json
import socket
import time

import harness
from harness import build_request, chunked

MAX_BODY = 65536
TOO_LARGE = ("Payload Too Large", "Content Too Large", "Request Entity Too Large")


class ProtocolTest(harness.ServerTestCase):
    config = {"limits": {"max_body_bytes": MAX_BODY}}

    # -- standard headers

    def test_every_response_has_server_date_and_content_length(self):
        cases = [("GET", "/hello/a", 200, "Hello, a"),
                 ("GET", "/ret/table", 200, '{"name":"squall","list":[1,2,3],"nested":{"ok":true}}'),
                 ("GET", "/nope", 404, "Not Found"),
                 ("DELETE", "/hello/a", 405, "Method Not Allowed"),
                 ("GET", "/abort/409", 409, "aborted with 409"),
                 ("GET", "/ret/status-body", 202, "accepted"), ("GET", "/ret/lone-status", 202, "")]
        for method, path, status, body in cases:
            with self.subTest(path=path):
                r = self.request(method, path)
                self.assertEqual(r.status, status, r)
                if path == "/ret/table":
                    self.assertEqual(r.json(), json.loads(body))
                else:
                    self.assertEqual(r.text.strip(), body)
                self.assertStandardHeaders(r)

    # -- keep-alive and Connection

    def test_http11_connection_is_kept_alive_by_default(self):
        with self.connect() as c:
            ports = set()
            for i in range(5):
                c.send(build_request("GET", "/req"))
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertNotEqual((r.header("Connection") or "").lower(), "close")
                ports.add(r.json()["remote_port"])
            self.assertEqual(ports, {c.local_port})
            self.assertTrue(c.is_open(0.2))

    def test_many_sequential_requests_on_one_connection(self):
        with self.connect() as c:
            for i in range(200):
                c.send(build_request("GET", "/seq/%d" % i))
                self.assertResponse(c.read_response(), 200, "seq %d" % i)

    def test_connection_close_from_client_closes_after_response(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/bye", [("Connection", "close")]))
            r = c.read_response()
            self.assertResponse(r, 200, "Hello, bye")
            self.assertEqual(r.header("Connection").lower(), "close")
            self.assertClosedByServer(c)
            self.assertEqual(c.buf, b"")

    def test_http10_closes_by_default(self):
        with self.connect() as c:
            c.send(b"GET /hello/ten HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertResponse(r, 200, "Hello, ten")
            self.assertIsNotNone(r.header("Content-Length"))
            self.assertIsNone(r.header("Transfer-Encoding"))
            self.assertClosedByServer(c)

    def test_http10_without_host_is_served(self):
        # Host arrived with HTTP/1.1; a 1.0 request may leave it out (RFC 9112 3.2).
        with self.connect() as c:
            c.send(b"GET /header/host HTTP/1.0\r\n\r\n")
            self.assertResponse(c.read_response(), 200, "(nil)")
            self.assertClosedByServer(c)

    def test_http11_host_header_is_matched_in_any_case(self):
        with self.connect() as c:
            c.send(b"GET /header/host HTTP/1.1\r\nhOsT: example\r\n\r\n")
            self.assertResponse(c.read_response(), 200, "example")

    def test_http10_keep_alive_when_asked(self):
        with self.connect() as c:
            c.send(b"GET /hello/one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertResponse(r, 200, "Hello, one")
            self.assertEqual(r.header("Connection").lower(), "keep-alive")
            c.send(b"GET /hello/two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertResponse(r, 200, "Hello, two")
            self.assertEqual(r.header("Connection").lower(), "keep-alive")
            c.send(b"GET /hello/three HTTP/1.0\r\n\r\n")
            self.assertResponse(c.read_response(), 200, "Hello, three")
            self.assertClosedByServer(c)

    def test_http10_post_with_body(self):
        with self.connect() as c:
            c.send(b"POST /echo-body HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
            self.assertResponse(c.read_response(), 200, "hello")
            self.assertClosedByServer(c)

    # -- CONNECT and protocol upgrades: refused, never handed to a handler

    def assertNotImplementedAndClosed(self, data, answered_first=()):
        with self.connect() as c:
            c.send(data)
            for body in answered_first:
                self.assertResponse(c.read_response(), 200, body)
            r = c.read_response()
            self.assertEqual(r.status, 501, r)
            self.assertEqual(r.text.strip(), "Not Implemented")
            self.assertEqual((r.header("Connection") or "").lower(), "close", r)
            self.assertStandardHeaders(r)
            self.assertClosedByServer(c)
            self.assertEqual(c.buf, b"", "more was sent after the 501")
        self.assertServesFresh()

    def test_connect_is_501_and_close(self):
        self.assertNotImplementedAndClosed(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")

    def test_connect_after_a_good_request_is_501_and_tunnels_nothing(self):
        # Bytes after the CONNECT head would be the tunnel's: never parsed as a request.
        self.assertNotImplementedAndClosed(
            build_request("GET", "/hello/first") +
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" +
            build_request("GET", "/hello/tunnelled"), answered_first=["Hello, first"])

    def test_websocket_upgrade_request_is_501_and_close(self):
        self.assertNotImplementedAndClosed(build_request(
            "GET", "/hello/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                 ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                 ("Sec-WebSocket-Version", "13")]) + b"\x81\x85frame")

    def test_h2c_upgrade_request_with_a_body_is_501_and_close(self):
        self.assertNotImplementedAndClosed(build_request(
            "POST", "/echo-body", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                   ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")], body="hello"))

    def test_upgrade_header_not_listed_in_connection_is_ignored(self):
        # Without "Connection: upgrade" it asks for nothing (RFC 9110 7.8): an ordinary request.
        with self.connect() as c:
            c.send(build_request("GET", "/hello/plain", [("Upgrade", "websocket")]) +
                   build_request("GET", "/hello/again"))
            self.assertResponse(c.read_response(), 200, "Hello, plain")
            self.assertResponse(c.read_response(), 200, "Hello, again")

    # -- pipelining

    def test_pipelined_requests_answered_in_order(self):
        n = 24
        data = b"".join(build_request("GET", "/seq/%d" % i) for i in range(n))
        with self.connect() as c:
            c.send(data)    # one write
            for i in range(n):
                r = c.read_response()
                self.assertResponse(r, 200, "seq %d" % i)
                self.assertStandardHeaders(r)
            self.assertTrue(c.is_open(0.2))

    def test_thousand_pipelined_requests_in_one_write(self):
        n = 1000
        with self.connect(timeout=20) as c:
            c.send(b"".join(build_request("GET", "/seq/%d" % i) for i in range(n)))
            for i in range(n):
                self.assertResponse(c.read_response(), 200, "seq %d" % i)

    def test_pipelined_mixed_methods_bodies_and_head(self):
        reqs = [
            ("GET", build_request("GET", "/seq/0"), "seq 0"),
            ("POST", build_request("POST", "/seq/1", body="one"), "seq 1 body one"),
            ("HEAD", build_request("HEAD", "/seq/2"), ""),
            ("POST", build_request("POST", "/seq/3", [("Transfer-Encoding", "chunked")],
                                   chunked("th", "r", "ee")), "seq 3 body three"),
            ("GET", build_request("GET", "/nope"), None),
            ("POST", build_request("POST", "/seq/5", [("Content-Length", "0")]), "seq 5 body "),
            ("GET", build_request("GET", "/seq/6?x=1"), "seq 6"),
        ]
        reqs = reqs * 3    # 21 requests
        with self.connect() as c:
            c.send(b"".join(data for _, data, _ in reqs))
            for i, (method, _, body) in enumerate(reqs):
                r = c.read_response(method)
                if body is None:
                    self.assertEqual(r.status, 404, (i, r))
                    self.assertEqual(r.text.strip(), "Not Found")
                else:
                    self.assertResponse(r, 200, body)
                if method == "HEAD":
                    self.assertEqual(r.header("Content-Length"), str(len("seq 2")))

    def test_pipelined_requests_split_at_odd_byte_boundaries(self):
        reqs = []
        for i in range(12):
            if i % 3 == 0:
                reqs.append((build_request("POST", "/seq/%d" % i, body="b%d" % i),
                             "seq %d body b%d" % (i, i)))
            elif i % 3 == 1:
                reqs.append((build_request("POST", "/seq/%d" % i,
                                           [("Transfer-Encoding", "chunked")],
                                           chunked("c", "%d" % i, ext="e=1")),
                             "seq %d body c%d" % (i, i)))
            else:
                reqs.append((build_request("GET", "/seq/%d" % i, [("X-Pad", "p" * i)]),
                             "seq %d" % i))
        data = b"".join(d for d, _ in reqs)
        with self.connect() as c:
            c.send_split(data, sizes=(1, 3, 7, 2, 13, 5, 11, 17), delay=0.001)
            for i, (_, body) in enumerate(reqs):
                self.assertResponse(c.read_response(), 200, body)

    def test_request_split_byte_by_byte(self):
        with self.connect() as c:
            c.send_split(build_request("POST", "/seq/1", [("X-A", "b")], "split body"),
                         sizes=(1,), delay=0.001)
            self.assertResponse(c.read_response(), 200, "seq 1 body split body")

    def test_pipelined_connection_close_stops_after_that_request(self):
        data = (build_request("GET", "/seq/1") +
                build_request("GET", "/seq/2", [("Connection", "close")]) +
                build_request("GET", "/seq/3"))
        with self.connect() as c:
            c.send(data)
            self.assertResponse(c.read_response(), 200, "seq 1")
            r = c.read_response()
            self.assertResponse(r, 200, "seq 2")
            self.assertEqual(r.header("Connection").lower(), "close")
            rest = c.read_until_close()
            self.assertEqual(rest, b"", "request after Connection: close was answered")

    def test_concurrent_connections_all_answered(self):
        def worker(k):
            out = []
            with self.connect() as c:
                for i in range(20):
                    c.send(build_request("GET", "/seq/%d-%d" % (k, i)))
                    r = c.read_response()
                    out.append((r.status, r.text))
            return out
        results = [harness.ThreadResult(worker, k) for k in range(16)]
        for k, res in enumerate(results):
            self.assertEqual(res.get(20), [(200, "seq %d-%d" % (k, i)) for i in range(20)])

    def test_pipelined_large_responses_stay_in_order(self):
        big = b"0123456789abcdef" * 65536
        with self.connect(timeout=20) as c:
            c.send(b"".join(build_request("GET", "/big") + build_request("GET", "/seq/%d" % i)
                            for i in range(4)))
            for i in range(4):
                r = c.read_response()
                self.assertEqual((r.status, len(r.body)), (200, len(big)), r)
                self.assertEqual(r.body, big)
                self.assertResponse(c.read_response(), 200, "seq %d" % i)

    def test_response_still_sent_after_client_half_close(self):
        with self.connect() as c:
            c.send(build_request("GET", "/hello/half"))
            c.sock.shutdown(socket.SHUT_WR)
            self.assertResponse(c.read_response(), 200, "Hello, half")
            self.assertClosedByServer(c)

    def test_client_gone_while_handler_runs_does_not_hurt_server(self):
        for i in range(3):
            c = self.connect()
            c.send(build_request("GET", "/spin?ms=200") + build_request("GET", "/seq/x"))
            c.close()
        c = self.connect()
        c.send(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial")
        c.close()
        time.sleep(0.5)
        self.assertServesFresh()
        with self.connect() as c:    # and keep-alive still works after those
            for i in range(3):
                c.send(build_request("GET", "/seq/%d" % i))
                self.assertResponse(c.read_response(), 200, "seq %d" % i)

    # -- chunked request bodies

    def test_chunked_body(self):
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")],
                             chunked("hello ", "chunked ", "world"))
        r = self.raw(data)
        self.assertResponse(r, 200, "hello chunked world")
        self.assertEqual(r.header("X-Body-Length"), "19")

    def test_chunked_body_with_extensions(self):
        body = b"5;name=value\r\nhello\r\n6;q=\"a;b\"\r\n world\r\n0;last\r\n\r\n"
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body)
        self.assertResponse(self.raw(data), 200, "hello world")

    def test_chunked_body_with_flag_then_valued_extension(self):
        body = b"6;flag;c=\"q\"\r\n world\r\n0\r\n\r\n"
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body)
        self.assertResponse(self.raw(data), 200, " world")

    def test_chunked_extension_after_a_valued_one_is_refused_cleanly(self):
        # Known limit of Debian's llhttp 8.1.0 (README "Known limit"): RFC 9112 allows
        # "5;a=1;b=2", llhttp rejects it as an invalid chunk size. The server must answer 400,
        # close, and keep serving others, never guess.
        body = b"5;a=1;b=2\r\nhello\r\n0\r\n\r\n"
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body)
        resp = self.raw(data)
        self.assertResponse(resp, 400, "Bad Request\n")
        self.assertEqual(resp.header("Connection"), "close")
        self.assertServesFresh()

    def test_chunked_body_with_trailers(self):
        body = chunked("trail", "ers", trailers=[("X-Trailer", "one"), ("X-Other", "two")])
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked"),
                                                   ("Trailer", "X-Trailer, X-Other")], body)
        with self.connect() as c:
            c.send(data + build_request("GET", "/hello/after-trailers"))
            self.assertResponse(c.read_response(), 200, "trailers")
            self.assertResponse(c.read_response(), 200, "Hello, after-trailers")

    def test_chunked_trailers_do_not_become_request_headers(self):
        body = chunked("a", trailers=[("X-Trailer", "smuggled")])
        with self.connect() as c:
            for name, want in (("x-trailer", "(nil)"), ("trailer", "X-Trailer")):
                c.send(build_request("POST", "/header/" + name, [("Transfer-Encoding", "chunked"),
                                                                 ("Trailer", "X-Trailer")], body))
                self.assertResponse(c.read_response(), 200, want)

    def test_chunked_body_uppercase_hex_sizes(self):
        payload = b"A" * 26 + b"B" * 171
        body = b"1A\r\n" + b"A" * 26 + b"\r\nAB\r\n" + b"B" * 171 + b"\r\n0\r\n\r\n"
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], body)
        self.assertResponse(self.raw(data), 200, payload)

    def test_chunked_body_many_tiny_chunks(self):
        pieces = [bytes([65 + i % 26]) for i in range(500)]
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")],
                             chunked(*pieces))
        self.assertResponse(self.raw(data), 200, b"".join(pieces))

    def test_empty_chunked_body(self):
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], b"0\r\n\r\n")
        r = self.raw(data)
        self.assertResponse(r, 200, "")
        self.assertEqual(r.header("X-Body-Length"), "0")

    def test_chunked_body_split_across_writes(self):
        data = build_request("POST", "/echo-body", [("Transfer-Encoding", "chunked")],
                             chunked("abc" * 50, "defg" * 30, ext="x=y"))
        with self.connect() as c:
            c.send_split(data, sizes=(4, 9, 1, 33), delay=0.001)
            self.assertResponse(c.read_response(), 200, "abc" * 50 + "defg" * 30)

    # -- HEAD

    def test_head_on_get_route_has_get_headers_and_no_body(self):
        for path in ("/hello/head", "/ret/table", "/big", "/ret/cookies"):
            with self.subTest(path=path), self.connect() as c:
                c.send(build_request("GET", path) + build_request("HEAD", path) +
                       build_request("GET", "/hello/after-head"))
                get = c.read_response("GET")
                head = c.read_response("HEAD")
                self.assertEqual(get.status, 200, get)
                self.assertEqual(head.status, 200, head)
                self.assertEqual(head.body, b"")
                self.assertEqual(head.header("Content-Length"), str(len(get.body)))
                self.assertEqual(head.header("Content-Type"), get.header("Content-Type"))
                self.assertEqual(head.header_all("Set-Cookie"), get.header_all("Set-Cookie"))
                self.assertStandardHeaders(head, head=True)
                # A stray body after the HEAD response would corrupt this one.
                self.assertResponse(c.read_response(), 200, "Hello, after-head")

    def test_head_on_unknown_path_is_404_without_body(self):
        with self.connect() as c:
            c.send(build_request("HEAD", "/nope") + build_request("GET", "/hello/x"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.body, b"")
            self.assertResponse(c.read_response(), 200, "Hello, x")

    # -- Expect: 100-continue

    def test_expect_100_continue_gets_interim_then_final(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Expect", "100-continue"),
                                                       ("Content-Length", "11")]))
            interim = c.read_response()
            self.assertEqual(interim.status, 100, interim)
            self.assertTrue(interim.raw.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw)
            c.send(b"hello world")
            r = c.read_response()
            self.assertResponse(r, 200, "hello world")
            self.assertStandardHeaders(r)
            c.send(build_request("GET", "/hello/after-continue"))
            self.assertResponse(c.read_response(), 200, "Hello, after-continue")

    def test_expect_100_continue_over_limit_is_413_without_100(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Expect", "100-continue"),
                                                       ("Content-Length", str(MAX_BODY + 1))]))
            r = c.read_response()
            self.assertEqual(r.status, 413, r)
            self.assertIn(r.text.strip(), TOO_LARGE)
            self.assertStandardHeaders(r)
            self.assertClosedByServer(c)
            self.assertNotIn(b"100 Continue", c.buf)
        self.assertServesFresh()

    def test_body_sent_without_waiting_for_100_still_works(self):
        data = build_request("POST", "/echo-body", [("Expect", "100-continue")], "eager")
        with self.connect() as c:
            c.send(data)
            interim, r = c.read_final_response()
            self.assertLessEqual(len(interim), 1)
            self.assertResponse(r, 200, "eager")


if __name__ == "__main__":
    harness.main()
